"""Where one evaluation keeps everything, under its output folder OUT.

OUT/nnUNet_raw, OUT/nnUNet_preprocessed and OUT/nnUNet_results are nnU-Net's three roots for this run; model
folders are named by nnU-Net's own rule (``convert_trainer_plans_config_to_identifier``). OUT/predictions,
OUT/logs and OUT/report are ours.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    out: str
    dataset: str            # DatasetXXX_Name
    plans_name: str
    configuration: str

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

    def model_dir(self, trainer: str) -> str:
        """nnU-Net's results folder of ``trainer``. Not nnU-Net's ``get_output_folder``: that joins
        ``nnunetv2.paths.nnUNet_results``, read once when nnunetv2 is first imported, while a layout is built for
        any output folder (tests build several per process); the folder name is nnU-Net's own rule. Imported here:
        ``nnunetv2.paths`` must first be imported after the command line has set this run's roots."""
        from nnunetv2.utilities.file_path_utilities import convert_trainer_plans_config_to_identifier
        return os.path.join(self.results, self.dataset,
                            convert_trainer_plans_config_to_identifier(trainer, self.plans_name, self.configuration))

    def fold_dir(self, trainer: str, fold) -> str:
        return os.path.join(self.model_dir(trainer), f"fold_{fold}")

    def stage1_checkpoint(self, trainer: str) -> str:
        return os.path.join(self.fold_dir(trainer, "all"), "pretraining", "checkpoint_final.pth")

    def final_checkpoint(self, trainer: str, fold: int) -> str:
        return os.path.join(self.fold_dir(trainer, fold), "checkpoint_final.pth")

    def pred_dir(self, trainer: str, fold: int) -> str:
        return os.path.join(self.out, "predictions", trainer, f"fold_{fold}")

    def summary(self, trainer: str, fold: int) -> str:
        return os.path.join(self.pred_dir(trainer, fold), "summary.json")
