"""The two-stage trainer behind every scheme: stage 1 (or a found stage-1 checkpoint), then stage 2.

Control flow of one `nnUNetv2_train` call (docs/architecture.md): nnU-Net handles `--c` for stage 2 outside the
trainer; we learn about it from plans['continue_training'] and resume stage 1 ourselves. The stage-1 checkpoint
is looked up in fold_X/pretraining, then fold_all/pretraining (nnUNetv2_pretrain D C all), else stage 1 runs.
"""
import os
from collections import Counter
from typing import ClassVar

import torch

from nnunet_anatomask import checkpoint_io
from nnunet_anatomask.interop.plan_like_pretrained import checkpoint_from_plans
from nnunet_anatomask.pretraining.schemes.base import MaskingScheme
from nnunet_anatomask.trainers import stage1_ddp
from nnunet_anatomask.trainers.data_checks import check_cases_can_teach
from nnunet_anatomask.trainers.stage1 import Stage1Runner
from nnunet_anatomask.trainers.stage1_budget import reuse_line
from nnunet_anatomask.trainers.stage2 import ConfigurationError, nnUNetTrainerStage2Recipe, \
    pretrained_weights_argument
from nnunet_anatomask.trainers.transfer_checks import check_same_plans


class nnUNetTrainerMaskedPretraining(nnUNetTrainerStage2Recipe):
    """Base of the scheme trainers; a subclass only names its scheme class."""

    scheme_class: ClassVar[type[MaskingScheme]]

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        stage1_ddp.keep_cpu_device(self, device)  # -num_gpus N runs stage 1 under DDP (docs/pools_and_ddp.md)

    def check_setup(self) -> None:
        super().check_setup()
        self.stage1 = Stage1Runner(self, self.scheme_class)  # builds the network on meta: checks the mask grid

    def initialize(self):
        if pretrained_weights_argument() is not None:
            raise ConfigurationError(
                f"{self.__class__.__name__} pretrains its own weights in stage 1, which would silently replace "
                f"-pretrained_weights. Fix: use -tr nnUNetTrainerFinetune -pretrained_weights PATH instead, or "
                f"continue pretraining from PATH with nnUNetv2_pretrain ... -pretrained_weights PATH.")
        super().initialize()

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
        fold_all = os.path.join(self.output_folder_base, "fold_all", "pretraining", "checkpoint_final.pth")
        for path in (self.stage1.final_checkpoint, fold_all):
            if os.path.isfile(path):
                ckpt = checkpoint_io.load_checkpoint_file(path, "stage-1 checkpoint")
                expected, source = self.stage1.compatibility(), f"The stage-1 checkpoint {path}"
                check_same_plans(ckpt, self.plans_manager.plans, self.configuration_name, expected["plans_hash"],
                                 source)
                checkpoint_io.check_same(ckpt, expected, source)
                self.print_to_log_file(reuse_line(path, ckpt, (self.stage1.num_epochs, self.stage1.iterations)))
                return path
        self.print_to_log_file("No stage-1 checkpoint found: running stage 1 now")
        return self.run_pretraining()

    def load_stage1_weights(self, path: str) -> None:
        """Stage 2 starts from the stage-1 weights; the backbone says which go over and how (CNN: nnU-Net's
        load_pretrained_weights, every key but seg_layers)."""
        keys = self.stage1.backbone.handover(path, self.network)
        parts = Counter(key.split(".")[0] for key in keys)
        self.print_to_log_file(f"Stage 2 starts from the stage-1 weights of {path}: {len(keys)} tensors ("
                               + ", ".join(f"{part} {n}" for part, n in parts.items()) + "); the rest starts fresh")

    def run_training(self):
        """Stage 1 (or a found stage-1 checkpoint) first; only then nnU-Net's initialize() builds stage 2's
        network and optimiser, so stage 1 runs without them in memory and the log reads in order."""
        if self.current_epoch == 0:
            path = self.stage1_checkpoint()
            if not self.was_initialized:
                self.initialize()
            self.load_stage1_weights(path)
        else:
            self.print_to_log_file(f"Stage 2 resumed at epoch {self.current_epoch}: stage-1 weights are not "
                                   f"loaded again")
        super().run_training()
