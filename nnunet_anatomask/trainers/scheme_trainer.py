"""Stage 1 mixed into a stage-2 trainer: the two-stage control flow behind every scheme trainer (registry.py).

The mixin touches no optimiser setting of the stage-2 trainer it joins (its lr, weight decay and schedule stay that
trainer's). Control flow of one `nnUNetv2_train` call (docs/architecture.md): nnU-Net handles `--c` for stage 2 outside the
trainer; we learn about it from plans['continue_training'] and resume stage 1 ourselves. The stage-1 checkpoint
is looked up in fold_X/pretraining, then fold_all/pretraining (nnUNetv2_pretrain D C all), else stage 1 runs. A
recipe trainer (``nnUNetTrainer<Scheme>[_Primus<size>]_<recipe>``, docs/recipes.md) keeps its stage 1 in the
recipe-less trainer's folder: one stage 1 serves every recipe.
"""
import os
from collections import Counter
from typing import ClassVar

import torch
from nnunetv2.utilities.file_path_utilities import convert_trainer_plans_config_to_identifier

from nnunet_anatomask import checkpoint_io, knobs
from nnunet_anatomask.interop.plan_like_pretrained import checkpoint_from_plans
from nnunet_anatomask.pretraining.schemes.base import Scheme
from nnunet_anatomask.trainers.data_checks import check_cases_can_teach
from nnunet_anatomask.trainers.stage1 import Stage1Runner
from nnunet_anatomask.trainers.stage1_budget import reuse_line
from nnunet_anatomask.trainers.stage2 import ConfigurationError
from nnunet_anatomask.trainers.transfer_checks import check_same_plans
from nnunet_anatomask.transfer import load as transfer
from nnunet_anatomask.transfer.parts import aliases


class Stage1Mixin:
    """Stage 1 before the stage-2 trainer that follows it in the bases (a Stage2Mixin trainer); a scheme trainer
    only names its scheme class."""

    scheme_class: ClassVar[type[Scheme]]
    stage1_trainer: ClassVar[str] = ""  # the trainer whose folders hold stage 1 (a recipe's: the recipe-less one)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.is_ddp and device.type == "cuda":  # torchrun: the GPU the launcher set (docs/pools_and_ddp.md)
            self.device = torch.device("cuda", torch.cuda.current_device())

    def check_setup(self) -> None:
        super().check_setup()
        self.stage1 = Stage1Runner(self, self.scheme_class,  # builds the network on meta: checks grid and settings
                                   os.path.join(self.stage1_output_folder(self.fold), "pretraining"))
        if knobs.transfer_mode() == "adapt":
            raise ConfigurationError(
                f"{knobs.TRANSFER}=adapt is for nnUNetTrainerFinetune (weights from other plans); "
                f"{type(self).__name__} pretrains on this run's own plans. Fix: unset {knobs.TRANSFER}.")

    def stage1_output_folder(self, fold) -> str:
        """The fold folder of ``stage1_trainer`` (nnU-Net's layout), where this trainer's stage 1 lives."""
        name = self.stage1_trainer or type(self).__name__
        model = convert_trainer_plans_config_to_identifier(name, self.plans_manager.plans_name, self.configuration_name)
        return os.path.join(os.path.dirname(self.output_folder_base), model, f"fold_{fold}")

    def refuse_outside_weights(self) -> None:
        """nnU-Net's -pretrained_weights loads a file after initialize(); stage 1's weights would replace it."""
        if self.weights_loaded_since_initialize():
            raise ConfigurationError(
                f"{type(self).__name__} pretrains its own weights in stage 1, which would silently replace "
                f"-pretrained_weights. Fix: use -tr nnUNetTrainerFinetune -pretrained_weights PATH instead, or "
                f"continue pretraining from PATH with nnUNetv2_pretrain ... -pretrained_weights PATH.")

    def run_pretraining(self, initial_weights: str = None) -> str:
        """Stage 1 only (nnUNetv2_pretrain): resumes with --c, returns the final checkpoint's path. A new run starts
        from ``initial_weights``, else from the checkpoint the plans were written for (plans' pretrain_info,
        nnUNetv2_plan_like_pretrained), else from random weights (docs/interop.md)."""
        self.check_training_data()
        if os.path.isfile(self.stage1.final_checkpoint):
            self.print_to_log_file(f"Stage 1 already finished: {self.stage1.final_checkpoint}")
            return self.stage1.final_checkpoint
        check_cases_can_teach(self.preprocessed_dataset_folder, self.plans_manager.dataset_name,
                              self.print_to_log_file)  # constant or NaN/Inf cases, before any work
        if self.continue_training and not os.path.isfile(self.stage1.latest_checkpoint):
            self.print_to_log_file("No stage-1 checkpoint_latest.pth to continue from: starting stage 1 anew")
        initial = initial_weights or checkpoint_from_plans(self.plans_manager.plans)
        return self.stage1.run(resume=self.continue_training, initial_weights=initial)

    def stage1_checkpoint(self) -> str:
        """fold_X/pretraining/checkpoint_final.pth, else fold_all's, else run (or resume) stage 1 now."""
        fold_all = os.path.join(self.stage1_output_folder("all"), "pretraining", "checkpoint_final.pth")
        for path in (self.stage1.final_checkpoint, fold_all):
            if os.path.isfile(path):
                ckpt = checkpoint_io.load_checkpoint_file(path, "stage-1 checkpoint")
                expected, source = self.stage1.compatibility(), f"The stage-1 checkpoint {path}"
                check_same_plans(ckpt, self.plans_manager.plans, self.configuration_name, expected["plans_hash"],
                                 source)
                checkpoint_io.check_same(ckpt, expected, source)
                self.stage1.check_settings(ckpt, source)
                self.print_to_log_file(reuse_line(path, ckpt, (self.stage1.num_epochs, self.stage1.iterations)))
                return path
        self.print_to_log_file("No stage-1 checkpoint found: running stage 1 now")
        return self.run_pretraining()

    def load_stage1_weights(self, path: str) -> None:
        """Stage 2 starts from the stage-1 weights; the backbone says which go over and how (CNN: nnU-Net's
        load_pretrained_weights, every key but seg_layers). Loading the encoder only (the recipe's or the user's
        choice, docs/recipes.md) gives the decoder its fresh start back afterwards. The transfer report goes to the
        console and the fold's log."""
        network = transfer.plain(self.network)
        loading = self.pretrained_loading()
        fresh = transfer.snapshot(network) if loading == "encoder" else {}
        keys = self.stage1.backbone.handover(path, self.network)
        transfer.load_state(network, fresh)
        first = aliases(network)
        loaded = {first[k] for k in keys if k in first} - set(fresh)
        parts = Counter(key.split(".")[0] for key in network.state_dict() if key in loaded)  # network order
        self.print_to_log_file(f"Stage 2 starts from the stage-1 weights of {path}: {len(loaded)} tensors ("
                               + ", ".join(f"{part} {n}" for part, n in parts.items()) + "); the rest starts fresh")
        report = transfer.loaded_report(network, loaded, f"stage-1 checkpoint {path}", loading=loading)
        for line in report.lines():
            self.print_to_log_file(line)

    def run_training(self):
        """Stage 1 (or a found stage-1 checkpoint) first; only then nnU-Net's initialize() builds stage 2's
        network and optimiser, so stage 1 runs without them in memory and the log reads in order."""
        if self.current_epoch == 0:
            self.refuse_outside_weights()
            path = self.stage1_checkpoint()
            if not self.was_initialized:
                self.initialize()
            self.load_stage1_weights(path)
        else:
            self.print_to_log_file(f"Stage 2 resumed at epoch {self.current_epoch}: stage-1 weights are not "
                                   f"loaded again")
        super().run_training()
