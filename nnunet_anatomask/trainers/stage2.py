"""Stage 2: nnU-Net's own segmentation training by nnssl's fine-tuning recipe (docs/usage.md).

Built on nnU-Net's nnUNetTrainer_warmup (SGD, linear lr warm-up over the first 5 % of epochs, then poly).
nnUNetTrainerScratch is this recipe from random init; nnUNetTrainerFinetune starts it from -pretrained_weights.

Start lr: the recipe's own (nnU-Net's 1e-2 with SGD on the CNN; nnU-Net's AbstractPrimus 3e-4 with AdamW on
Primus), or the knob ``nnUNet_anatomask_finetune_lr`` for every stage-2 trainer (docs/usage.md); why the CNN default
stays 1e-2: docs/results.md (learning-rate comparison).
"""
import contextlib
import os
import shutil
import sys
from typing import Iterator, Optional, Union

import torch
from torch._dynamo import OptimizedModule

from nnunetv2.paths import nnUNet_results
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.nnUNetTrainer.variants.lr_schedule.nnUNetTrainer_warmup import nnUNetTrainer_warmup
from nnunetv2.utilities.file_path_utilities import get_output_folder

from nnunet_anatomask import checkpoint_io, knobs
from nnunet_anatomask.errors import PluginError
from nnunet_anatomask.trainers.experiment_log import name_runs, run_name
from nnunet_anatomask.trainers.transfer_checks import check_transfer


class ConfigurationError(PluginError, RuntimeError):
    """A request this plugin cannot serve; the message names the problem and the fix."""


def pretrained_weights_argument() -> Optional[str]:
    """The -pretrained_weights value of the nnUNetv2_train command line, if any (nnU-Net loads it itself)."""
    argv = sys.argv
    return argv[argv.index("-pretrained_weights") + 1] if "-pretrained_weights" in argv[:-1] else None


def planned_output_folder(plans: dict, configuration: str, fold, trainer_name: str) -> Optional[str]:
    """The fold folder nnU-Net's __init__ will create (nnU-Net's get_output_folder), or None without nnUNet_results."""
    if not nnUNet_results.is_set():
        return None
    return get_output_folder(plans["dataset_name"], trainer_name, plans["plans_name"], configuration, fold)


@contextlib.contextmanager
def no_empty_folders_left_on_error(folder: Optional[str]) -> Iterator[None]:
    """If the block (a trainer's __init__) raises, remove the folders on the way to ``folder`` that did not exist
    before it, with what the block wrote into them (nnU-Net's __init__ starts a log file there)."""
    created, path = None, folder
    while path and not os.path.isdir(path):
        created, path = path, os.path.dirname(path)  # ends at the outermost folder that is missing now
    try:
        yield
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


class nnUNetTrainerStage2Recipe(nnUNetTrainer_warmup):
    """nnssl's fine-tuning recipe with our run-length knobs, atomic checkpoints and a fixed load_checkpoint."""

    warmup_fraction = 0.05  # nnssl / nnUNetTrainer_warmup: 50 of 1000 epochs

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        self.continue_training = bool(plans.get("continue_training", False))  # popped by super().__init__
        knobs.check_all()  # a bad knob is named before nnU-Net's __init__ makes the fold's folder
        with no_empty_folders_left_on_error(planned_output_folder(plans, configuration, fold, type(self).__name__)):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.check_setup()
        name_runs(self.logger, run_name(self, f"stage 2 ({type(self).__name__})"))  # W&B: tell it from stage 1's
        self.num_epochs = knobs.read_knob(knobs.FINETUNE_EPOCHS)
        self.num_iterations_per_epoch = knobs.read_knob(knobs.ITERS_PER_EPOCH)
        self.num_val_iterations_per_epoch = knobs.validation_iterations(self.num_iterations_per_epoch)
        self.save_every = knobs.read_knob(knobs.SAVE_EVERY)
        self.warmup_duration_whole_net = knobs.warmup_epochs(self.warmup_fraction, self.num_epochs)
        start_lr = knobs.read_lr(knobs.FINETUNE_LR)
        if start_lr is not None:  # else the lr the base trainers set (nnUNetTrainer 1e-2, AbstractPrimus 3e-4)
            self.initial_lr = start_lr

    def check_setup(self) -> None:
        """Refuse, before any work, what this trainer cannot serve; a failure leaves no empty folder behind."""
        if self.is_cascaded:
            raise ConfigurationError(
                f"Configuration '{self.configuration_name}' is a cascade stage (extra input channels from "
                f"'{self.configuration_manager.previous_stage_name}'); nnunet-anatomask does not support the "
                f"cascade. Fix: use 3d_fullres, 3d_lowres or 2d.")

    def check_training_data(self) -> None:
        """Preprocessed data present, and enough cases for nnU-Net's 5-fold split: say so before any work."""
        folder = self.preprocessed_dataset_folder
        if not os.path.isdir(folder):
            raise ConfigurationError(
                f"No preprocessed data for configuration '{self.configuration_name}' at {folder}. Fix: run "
                f"nnUNetv2_plan_and_preprocess -d {self.plans_manager.dataset_name} -c {self.configuration_name} "
                f"with the planner that writes plans '{self.plans_manager.plans_name}'.")
        splits = os.path.join(self.preprocessed_dataset_folder_base, "splits_final.json")
        if self.fold == "all" or os.path.isfile(splits):
            return
        cases = len(infer_dataset_class(folder).get_identifiers(folder))
        if cases < 5:
            raise ConfigurationError(
                f"The dataset has {cases} training cases, but nnU-Net's 5-fold cross-validation split needs at "
                f"least 5. Fix: train fold 'all' (nnUNetv2_train ... all / nnUNetv2_pretrain ... all), or write "
                f"your own {splits}.")

    def run_training(self):
        self.check_training_data()
        super().run_training()

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint, written to a temporary file and renamed: never half-written."""
        tmp = checkpoint_io.temporary_path(filename)
        super().save_checkpoint(tmp)
        if os.path.isfile(tmp):  # not written when checkpointing is disabled or on ranks > 0
            checkpoint_io.commit(tmp, filename)

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        """nnUNetTrainer_warmup.load_checkpoint, fixed: weights_only=False (torch >= 2.6) and dict input."""
        if not self.was_initialized:
            self.initialize()
        checkpoint = filename_or_checkpoint
        if isinstance(checkpoint, str):
            checkpoint = torch.load(checkpoint, map_location=self.device, weights_only=False)
        network = self.network.module if self.is_ddp else self.network
        if isinstance(network, OptimizedModule):
            network = network._orig_mod
        own_keys = network.state_dict().keys()
        network.load_state_dict({k[7:] if k not in own_keys and k.startswith("module.") else k: v
                                 for k, v in checkpoint["network_weights"].items()})
        self.my_init_kwargs = checkpoint["init_args"]
        self.current_epoch = checkpoint["current_epoch"]
        self.logger.load_checkpoint(checkpoint["logging"])
        self._best_ema = checkpoint["_best_ema"]
        self.inference_allowed_mirroring_axes = checkpoint.get("inference_allowed_mirroring_axes",
                                                               self.inference_allowed_mirroring_axes)
        stage = "warmup_all" if self.current_epoch < self.warmup_duration_whole_net else "train"
        self.optimizer, self.lr_scheduler = self.configure_optimizers(stage)
        self.optimizer.load_state_dict(checkpoint["optimizer_state"])
        if self.grad_scaler is not None and checkpoint["grad_scaler_state"] is not None:
            self.grad_scaler.load_state_dict(checkpoint["grad_scaler_state"])

    def validate_pretrained_weights(self, path: str) -> dict:
        """Readable, a checkpoint, right configuration, for our stage-1 checkpoints the same channels, plans and CT
        statistics (transfer_checks.py), every key and shape matching: else one clear error."""
        ckpt = checkpoint_io.load_checkpoint_file(path, "-pretrained_weights file")
        source = f"-pretrained_weights {path}"
        checkpoint_io.check_same(ckpt, {"configuration": self.configuration_name}, source)
        check_transfer(ckpt, self.plans_manager.plans, self.dataset_json, self.configuration_name, source)
        network = self.network._orig_mod if isinstance(self.network, OptimizedModule) else self.network
        checkpoint_io.check_weights_match(network.state_dict(), ckpt["network_weights"], source)
        return ckpt


class nnUNetTrainerScratch(nnUNetTrainerStage2Recipe):
    """Stage 2's exact recipe and budget from random initialisation: the fair baseline for every comparison."""


class nnUNetTrainerFinetune(nnUNetTrainerStage2Recipe):
    """Stage 2 alone, from a required -pretrained_weights checkpoint (ours or any nnU-Net-compatible one)."""

    def initialize(self):
        super().initialize()
        path = pretrained_weights_argument()
        if path is None and not self.continue_training:
            raise ConfigurationError(
                "nnUNetTrainerFinetune needs -pretrained_weights PATH (e.g. <fold>/pretraining/"
                "checkpoint_final.pth). Fix: add it, or use nnUNetTrainerScratch to train from random init.")
        if path is not None:
            self.validate_pretrained_weights(path)

    def run_training(self):
        if self.continue_training and self.current_epoch == 0 and pretrained_weights_argument() is None:
            raise ConfigurationError(
                f"--c found no stage-2 checkpoint in {self.output_folder}, and continuing cannot take "
                f"-pretrained_weights. Fix: start again without --c and with -pretrained_weights PATH.")
        super().run_training()
