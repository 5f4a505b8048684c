"""Where one evaluation keeps everything, under its output folder OUT.

OUT/nnUNet_raw, OUT/nnUNet_preprocessed and OUT/nnUNet_results are nnU-Net's three roots for this run; model
folders are named by nnU-Net's own rule (``convert_trainer_plans_config_to_identifier``). OUT/predictions,
OUT/logs and OUT/report are ours.

An *arm* is what one row of the report trains: a trainer, and for a scheme the length of its stage 1 as a factor
of the size's (``--stage1-factors``). Its name is the trainer's, with ``_x<factor>`` appended unless the factor
is 1, so a run without factors keeps every folder it always had. A scheme's stage 1 with factor f != 1 and the
stage-2 runs from it live under their own nnU-Net results root, OUT/stage1_x<f>/nnUNet_results (nnU-Net names
model folders by trainer only). With a pool (``--size cpu-pool``) stage 1 runs on the pool dataset and each
scheme's stage-2 runs are nnUNetTrainerFinetune from its pool checkpoint, under OUT/finetune_<arm>/nnUNet_results.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional

from nnunet_anatomask.evaluation.trainer_names import FINETUNE, SCRATCH, stage1_trainer

_ARM = re.compile(r"^(?P<trainer>.+)_x(?P<factor>\d+(?:\.\d+)?)$")


def arm_name(trainer: str, factor: float = 1) -> str:
    """'nnUNetTrainerAnatoMask' (factor 1) or 'nnUNetTrainerAnatoMask_x10'."""
    return trainer if factor == 1 else f"{trainer}_x{factor:g}"


def split_arm(arm: str) -> tuple[str, float]:
    """(trainer, stage-1 factor) of an arm name."""
    m = _ARM.match(arm)
    return (m["trainer"], float(m["factor"])) if m else (arm, 1.0)


@dataclass(frozen=True)
class Layout:
    out: str
    dataset: str            # DatasetXXX_Name
    plans_name: str
    configuration: str
    pool_dataset: Optional[str] = None   # DatasetXXX_Name of the unlabelled pool stage 1 runs on, if any

    @property
    def raw(self) -> str:
        return os.path.join(self.out, "nnUNet_raw")

    @property
    def preprocessed(self) -> str:
        return os.path.join(self.out, "nnUNet_preprocessed")

    @property
    def results(self) -> str:
        return os.path.join(self.out, "nnUNet_results")

    @property
    def raw_dataset(self) -> str:
        return os.path.join(self.raw, self.dataset)

    @property
    def pre_dataset(self) -> str:
        return os.path.join(self.preprocessed, self.dataset)

    @property
    def logs(self) -> str:
        return os.path.join(self.out, "logs")

    @property
    def report(self) -> str:
        return os.path.join(self.out, "report")

    def plans_file(self, plans_name: str = "") -> str:
        return os.path.join(self.pre_dataset, (plans_name or self.plans_name) + ".json")

    def stage1_results(self, factor: float = 1) -> str:
        """The nnU-Net results root of stage 1 with this length factor."""
        return self.results if factor == 1 else os.path.join(self.out, f"stage1_x{factor:g}", "nnUNet_results")

    def stage2_results(self, arm: str) -> str:
        """The nnU-Net results root of an arm's stage-2 runs."""
        trainer, factor = split_arm(arm)
        if trainer == SCRATCH:
            return self.results
        if self.pool_dataset is not None:
            return os.path.join(self.out, f"finetune_{arm}", "nnUNet_results")
        return self.stage1_results(factor)

    def stage2_trainer(self, arm: str) -> str:
        """The trainer an arm's stage-2 runs use: its own, or with a pool nnUNetTrainerFinetune (with the arm's
        recipe suffix, docs/recipes.md) for a scheme."""
        trainer, _ = split_arm(arm)
        if self.pool_dataset is None or trainer == SCRATCH:
            return trainer
        return FINETUNE + trainer[len(stage1_trainer(trainer)):]

    def _model_folder(self, root: str, dataset: str, trainer: str) -> str:
        """nnU-Net's results folder of ``trainer``. Not nnU-Net's ``get_output_folder``: that joins
        ``nnunetv2.paths.nnUNet_results``, read once when nnunetv2 is first imported, while a layout is built for
        any output folder (tests build several per process); the folder name is nnU-Net's own rule. Imported here:
        ``nnunetv2.paths`` must first be imported after the command line has set this run's roots."""
        from nnunetv2.utilities.file_path_utilities import convert_trainer_plans_config_to_identifier
        return os.path.join(root, dataset,
                            convert_trainer_plans_config_to_identifier(trainer, self.plans_name, self.configuration))

    def model_dir(self, arm: str) -> str:
        """The folder of an arm's stage-2 models (on the labelled dataset)."""
        return self._model_folder(self.stage2_results(arm), self.dataset, self.stage2_trainer(arm))

    def fold_dir(self, arm: str, fold) -> str:
        return os.path.join(self.model_dir(arm), f"fold_{fold}")

    def stage1_dir(self, arm: str) -> str:
        """fold_all/pretraining of a scheme arm's stage 1 (on the pool, if there is one); a recipe arm's is its
        scheme's (every recipe shares one stage 1)."""
        trainer, factor = split_arm(arm)
        trainer = stage1_trainer(trainer)
        return os.path.join(self._model_folder(self.stage1_results(factor), self.pool_dataset or self.dataset,
                                               trainer), "fold_all", "pretraining")

    def stage1_checkpoint(self, arm: str) -> str:
        return os.path.join(self.stage1_dir(arm), "checkpoint_final.pth")

    def stage1_latest(self, arm: str) -> str:
        """The checkpoint a stopped stage 1 resumes from (removed when it finishes)."""
        return os.path.join(self.stage1_dir(arm), "checkpoint_latest.pth")

    def final_checkpoint(self, arm: str, fold: int) -> str:
        return os.path.join(self.fold_dir(arm, fold), "checkpoint_final.pth")

    def pred_dir(self, arm: str, fold: int) -> str:
        return os.path.join(self.out, "predictions", arm, f"fold_{fold}")

    def summary(self, arm: str, fold: int) -> str:
        return os.path.join(self.pred_dir(arm, fold), "summary.json")
