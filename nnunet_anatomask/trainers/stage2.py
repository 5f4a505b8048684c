"""Stage 2: nnU-Net's own segmentation training by the `full` recipe (docs/usage.md, docs/recipes.md).

``Stage2Mixin`` is what every stage-2 trainer of this plugin adds to an nnU-Net trainer (run-length knobs, checks
before any work, one run per fold folder, atomic checkpoints, a fixed load_checkpoint) without touching its
optimiser. The `full` recipe is ``nnUNetTrainerStage2Recipe``: the mixin on nnU-Net's nnUNetTrainer_warmup (SGD,
linear lr warm-up over the first 5 % of epochs, then poly). nnUNetTrainerScratch is this recipe from random init;
nnUNetTrainerFinetune starts it from pretrained weights (the setting nnUNet_anatomask_pretrained_weights, nnU-Net's
-pretrained_weights, or the plans' checkpoint).

Other recipes (nnssl's, decoder-first warm-up, frozen encoder, linear probe, layer-wise lr decay) are mixins in
front of this trainer (recipe_trainer.py, docs/recipes.md).

Start lr: the recipe's own (nnU-Net's 1e-2 with SGD on the CNN; nnU-Net's AbstractPrimus 3e-4 with AdamW on
Primus), or the knob ``nnUNet_anatomask_finetune_lr`` for every stage-2 trainer (docs/usage.md); why the CNN default
stays 1e-2: docs/results.md (learning-rate comparison).
"""
import contextlib
import os
import shutil
from typing import Iterator, Optional, Union

import torch
from torch._dynamo import OptimizedModule

from nnunetv2.paths import nnUNet_results
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.nnUNetTrainer.variants.lr_schedule.nnUNetTrainer_warmup import nnUNetTrainer_warmup
from nnunetv2.utilities.file_path_utilities import get_output_folder

from nnunet_anatomask import checkpoint_io, environment, knobs
from nnunet_anatomask.errors import PluginError
from nnunet_anatomask.interop import stage2 as interop
from nnunet_anatomask.interop.plan_like_pretrained import checkpoint_from_plans
from nnunet_anatomask.interop.weights_in import is_foreign_nnssl
from nnunet_anatomask.trainers import stage1_ddp
from nnunet_anatomask.trainers.experiment_log import name_runs, run_name
from nnunet_anatomask.trainers.run_folder import RunFolder, describe_run, outermost_missing
from nnunet_anatomask.trainers.transfer_checks import check_transfer, plan_differences
from nnunet_anatomask.transfer import load as transfer
from nnunet_anatomask.transfer.parts import parts


STAGE2_READ_FIX = ("Fix: move this file away, then run the same command with --c again: nnU-Net continues from the "
                   "next checkpoint it finds (checkpoint_final.pth, checkpoint_latest.pth, checkpoint_best.pth, in "
                   "this order), or starts stage 2 anew if there is none.")


class ConfigurationError(PluginError, RuntimeError):
    """A request this plugin cannot serve; the message names the problem and the fix."""


@torch.no_grad()
def weights_fingerprint(network: torch.nn.Module) -> float:
    """The sum of every parameter (float64): it changes when weights are loaded into the network."""
    return float(sum(p.double().sum() for p in transfer.plain(network).parameters()))


def planned_output_folder(plans: dict, configuration: str, fold, trainer_name: str) -> Optional[str]:
    """The fold folder nnU-Net's __init__ will create (nnU-Net's get_output_folder), or None without nnUNet_results."""
    if not nnUNet_results.is_set():
        return None
    return get_output_folder(plans["dataset_name"], trainer_name, plans["plans_name"], configuration, fold)


@contextlib.contextmanager
def no_empty_folders_left_on_error(folder: Optional[str]) -> Iterator[None]:
    """If the block (a trainer's __init__) raises, remove the folders on the way to ``folder`` that did not exist
    before it, with what the block wrote into them (nnU-Net's __init__ starts a log file there)."""
    created = outermost_missing(folder)
    try:
        yield
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


class Stage2Mixin:
    """Our additions to an nnU-Net trainer (the base after this mixin): the run-length knobs, checks before any
    work, one run per fold folder, atomic checkpoints, a fixed load_checkpoint. The optimiser stays the base
    trainer's, its start lr too unless the user sets nnUNet_anatomask_finetune_lr. The base must be
    nnUNetTrainer_warmup-like (a warm-up stage, ``configure_optimizers(stage)``)."""

    warmup_fraction = 0.05  # nnssl / nnUNetTrainer_warmup: 50 of 1000 epochs
    takes_pretrained_weights = False  # nnUNetTrainerFinetune starts from nnUNet_anatomask_pretrained_weights

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        self.continue_training = bool(plans.get("continue_training", False))  # popped by super().__init__
        knobs.check_all()  # a bad knob is named before nnU-Net's __init__ makes the fold's folder
        folder = planned_output_folder(plans, configuration, fold, type(self).__name__)
        environment.check_training_environment(device, folder)  # nnUNet_results, writable, the device
        with no_empty_folders_left_on_error(folder):
            run = describe_run(type(self).__name__, plans, configuration, fold, self.continue_training)
            self.run_folder = RunFolder(folder, run, holds_lock=stage1_ddp.rank() == 0)  # one run per fold folder
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.run_folder.add_own_file(self.log_file)
            self.check_setup()
        for note in self.run_folder.notes():
            self.print_to_log_file(note)
        name_runs(self.logger, run_name(self, f"stage 2 ({type(self).__name__})"))  # W&B: tell it from stage 1's
        self.num_epochs = knobs.read_knob(knobs.FINETUNE_EPOCHS)
        self.num_iterations_per_epoch = knobs.read_knob(knobs.ITERS_PER_EPOCH)
        self.num_val_iterations_per_epoch = knobs.validation_iterations(self.num_iterations_per_epoch)
        self.save_every = knobs.read_knob(knobs.SAVE_EVERY)
        self.warmup_duration_whole_net = knobs.warmup_epochs(self.warmup_fraction, self.num_epochs)
        start_lr = knobs.read_lr(knobs.FINETUNE_LR)
        if start_lr is not None:  # else the lr the base trainers set (nnUNetTrainer 1e-2, AbstractPrimus 3e-4)
            self.initial_lr = start_lr
        self.initialized_weights: Optional[float] = None  # weights_fingerprint right after initialize()

    def check_setup(self) -> None:
        """Refuse, before any work, what this trainer cannot serve; a failure leaves no empty folder behind."""
        if self.is_cascaded:
            raise ConfigurationError(
                f"Configuration '{self.configuration_name}' is a cascade stage (extra input channels from "
                f"'{self.configuration_manager.previous_stage_name}'); nnunet-anatomask does not support the "
                f"cascade. Fix: use 3d_fullres, 3d_lowres or 2d.")
        setting = knobs.pretrained_weights()
        if setting is not None and not self.takes_pretrained_weights:
            raise ConfigurationError(
                f"{knobs.PRETRAINED_WEIGHTS} is set ({setting}), but {type(self).__name__} does not start from it (it "
                f"starts from random weights or from its own stage 1) and would ignore it. Fix: use -tr "
                f"nnUNetTrainerFinetune (or one of its recipes), or unset {knobs.PRETRAINED_WEIGHTS}.")

    def initialize(self):
        super().initialize()
        self.initialized_weights = weights_fingerprint(self.network)

    def weights_loaded_since_initialize(self) -> bool:
        """True if the network's weights changed after initialize(): nnU-Net's -pretrained_weights loader
        (run_training.maybe_load_checkpoint: initialize(), then load_pretrained_weights) is how that happens."""
        return self.was_initialized and weights_fingerprint(self.network) != self.initialized_weights

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
        with checkpoint_io.written_atomically(filename) as tmp:
            super().save_checkpoint(tmp)

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        """nnUNetTrainer_warmup.load_checkpoint, fixed: dict input, and a file read by our checkpoint reader (an
        unreadable file is named, with the fix)."""
        if not self.was_initialized:
            self.initialize()
        checkpoint = filename_or_checkpoint
        if isinstance(checkpoint, str):
            checkpoint = checkpoint_io.load_checkpoint_file(checkpoint, "stage-2 checkpoint", STAGE2_READ_FIX)
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
        self.optimizer, self.lr_scheduler = self.optimiser_for_checkpoint()
        self.optimizer.load_state_dict(checkpoint["optimizer_state"])
        if self.grad_scaler is not None and checkpoint["grad_scaler_state"] is not None:
            self.grad_scaler.load_state_dict(checkpoint["grad_scaler_state"])

    def optimiser_for_checkpoint(self):
        """The optimiser a checkpoint's state belongs to (nnUNetTrainer_warmup's stage at the epoch to continue)."""
        return self.configure_optimizers("warmup_all" if self.current_epoch < self.warmup_duration_whole_net
                                         else "train")

    def pretrained_loading(self) -> str:
        """Which pretrained parts stage 2 loads: 'all' (every tensor but the output layer), or 'encoder' (stem and
        encoder, nnssl's choice) when nnUNet_anatomask_pretrained_parts says so (docs/recipes.md)."""
        return knobs.pretrained_parts() or "all"

    def validate_pretrained_weights(self, path: str, given_as: str = "-pretrained_weights",
                                    ckpt: Optional[dict] = None) -> dict:
        """Readable, a checkpoint, right configuration, for our stage-1 checkpoints the same channels, plans and CT
        statistics (transfer_checks.py), every key and shape matching: else one clear error. ``given_as``: how the
        user named the file (nnU-Net's flag or our setting), for the messages; ``ckpt``: the file, if read already.
        (An nnssl-format checkpoint never reaches it: the setting takes it through interop.plan_from_setting.)"""
        source = f"-pretrained_weights {path}" if given_as == "-pretrained_weights" else f"{given_as}={path}"
        if ckpt is None:
            ckpt = checkpoint_io.load_checkpoint_file(path, f"{given_as} file")
        checkpoint_io.check_same(ckpt, {"configuration": self.configuration_name}, source)
        check_transfer(ckpt, self.plans_manager.plans, self.dataset_json, self.configuration_name, source)
        network = transfer.plain(self.network)
        checkpoint_io.check_weights_match(network.state_dict(), ckpt["network_weights"], source)
        return ckpt


class nnUNetTrainerStage2Recipe(Stage2Mixin, nnUNetTrainer_warmup):
    """The `full` recipe (nnUNetTrainer_warmup: SGD, start lr 1e-2) with our knobs, checks and atomic checkpoints."""


class nnUNetTrainerScratch(nnUNetTrainerStage2Recipe):
    """Stage 2's exact recipe and budget from random initialisation: the fair baseline for every comparison."""


class nnUNetTrainerFinetune(nnUNetTrainerStage2Recipe):
    """Stage 2 alone, from a required checkpoint: the setting nnUNet_anatomask_pretrained_weights=PATH (ours,
    nnU-Net's or nnssl's, loaded here, also with nnUNet_anatomask_transfer=adapt for weights from other plans;
    docs/recipes.md, docs/interop.md), nnU-Net's -pretrained_weights PATH (ours or any nnU-Net-compatible one,
    loaded by nnU-Net after initialize(), found as weights changed since; identical plans), or the checkpoint the
    plans were written for (nnUNetv2_plan_like_pretrained: ours or nnssl's, loaded here; docs/interop.md)."""

    takes_pretrained_weights = True

    def initialize(self):
        super().initialize()
        self.pretrained = None   # (state, report, citations) to load at epoch 0; None: nnU-Net's loader or --c
        self.fresh_decoder = None  # the decoder's fresh start, restored after nnU-Net's loader (encoder-only)
        setting = knobs.pretrained_weights()
        self.planned = checkpoint_from_plans(self.plans_manager.plans)
        if self.planned is not None and setting is not None:
            raise ConfigurationError(
                f"The plans {self.plans_manager.plans_name} were written for the checkpoint {self.planned}, and "
                f"{knobs.PRETRAINED_WEIGHTS}={setting} was given too. Fix: give no other checkpoint (the plans' "
                f"checkpoint is loaded), or train with plans that name no checkpoint.")
        network = transfer.plain(self.network)
        if setting is not None:
            self.pretrained = self.plan_transfer(setting, knobs.transfer_mode(), network)
        elif self.planned is None and self.pretrained_loading() == "encoder":
            self.fresh_decoder = transfer.snapshot(network)  # in case nnU-Net's -pretrained_weights loads next

    def plan_transfer(self, path: str, mode: str, network) -> tuple:
        """Check the setting's checkpoint and work out what loads: (state, report, citation lines). An nnssl-format
        checkpoint gives its stem and encoder (docs/interop.md); ours or nnU-Net's are checked, strictly as
        -pretrained_weights with the same messages (docs/recipes.md)."""
        ckpt = checkpoint_io.load_checkpoint_file(path, f"{knobs.PRETRAINED_WEIGHTS} file")
        if is_foreign_nnssl(ckpt):
            return (*interop.plan_from_setting(ckpt, path, self, mode), interop.citation_lines(ckpt))
        if mode == "strict":
            self.validate_pretrained_weights(path, knobs.PRETRAINED_WEIGHTS, ckpt)
        state, report = transfer.transfer_state(
            ckpt["network_weights"], network, mode=mode, loading=self.pretrained_loading(),
            source=f"{knobs.PRETRAINED_WEIGHTS}={path}", source_patch=ckpt.get("patch_size"),
            target_patch=self.configuration_manager.patch_size)
        if mode == "adapt":
            plans = (ckpt.get("init_args") or {}).get("plans")
            if isinstance(plans, dict) and self.configuration_name in plans.get("configurations", {}):
                report.notes += [f"plans differ (checkpoint vs this run): {d}"
                                 for d in plan_differences(plans, self.plans_manager.plans, self.configuration_name)]
            if not state:
                raise checkpoint_io.CheckpointError(
                    f"{knobs.PRETRAINED_WEIGHTS}={path}: no tensor of it fits this network, even adapted (another "
                    f"architecture or dimensionality?). Fix: use a checkpoint of the same network family.")
        return state, report, []

    def check_outside_weights(self) -> bool:
        """Whether nnU-Net's -pretrained_weights loaded weights after initialize(); refused next to another source
        of weights, or with the adapt transfer (nnU-Net's loader needs every tensor in the same shape)."""
        if not self.weights_loaded_since_initialize():
            return False
        other = self.planned or knobs.pretrained_weights()
        if other is not None:
            raise ConfigurationError(
                f"-pretrained_weights was given, and so was {other} ({knobs.PRETRAINED_WEIGHTS} or the plans' "
                f"checkpoint). Fix: give the checkpoint once.")
        if knobs.transfer_mode() == "adapt":
            raise ConfigurationError(
                f"{knobs.TRANSFER}=adapt cannot take -pretrained_weights: nnU-Net loads that file itself and needs "
                f"every tensor in the same shape. Fix: give the checkpoint as {knobs.PRETRAINED_WEIGHTS}=PATH instead.")
        return True

    def load_pretrained(self) -> None:
        """At epoch 0: load the setting's or the plans' weights, or finish nnU-Net's load of -pretrained_weights;
        report either. Without any of them, refuse before any training."""
        network = transfer.plain(self.network)
        outside = self.check_outside_weights()
        if self.planned is not None:
            for line in interop.load_from_plans(self.planned, self):
                self.print_to_log_file(line)
            return
        citations = []
        if self.pretrained is not None:
            state, report, citations = self.pretrained
            transfer.load_state(network, state)
        elif outside:
            if self.fresh_decoder is not None:
                transfer.load_state(network, self.fresh_decoder)
            loaded = {k for k in parts(network) if ".seg_layers." not in k} - set(self.fresh_decoder or {})
            report = transfer.loaded_report(network, loaded, "-pretrained_weights (loaded by nnU-Net)",
                                            loading=self.pretrained_loading())
        else:
            raise ConfigurationError(self.missing_weights_message())
        for line in [*report.lines(), *citations]:
            self.print_to_log_file(line)

    def missing_weights_message(self) -> str:
        if self.continue_training:
            return (f"--c found no stage-2 checkpoint in {self.output_folder}, and continuing cannot take "
                    f"-pretrained_weights. Fix: start again without --c and with -pretrained_weights PATH, or set "
                    f"{knobs.PRETRAINED_WEIGHTS}=PATH.")
        return (f"nnUNetTrainerFinetune needs -pretrained_weights PATH (e.g. <fold>/pretraining/checkpoint_final.pth), "
                f"{knobs.PRETRAINED_WEIGHTS}=PATH, or plans written by nnUNetv2_plan_like_pretrained (-p). Fix: add "
                f"one, or use nnUNetTrainerScratch to train from random init.")

    def run_training(self):
        if self.current_epoch == 0:
            if not self.was_initialized:
                self.initialize()
            self.load_pretrained()
        super().run_training()
