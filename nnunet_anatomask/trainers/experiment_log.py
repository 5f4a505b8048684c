"""nnU-Net's experiment logger in stage 1, and run names that tell stage 1 from stage 2 (docs/watching.md).

nnU-Net 2.8.1's ``MetaLogger`` (nnunetv2/training/logging/nnunet_logger.py) sends what stage 2 logs to its
backends: Weights & Biases when ``nnUNet_wandb_enabled=1`` (project ``nnUNet_wandb_project``, mode
``nnUNet_wandb_mode``, run files under the output folder). Stage 1 builds the same ``MetaLogger`` on its own folder
(``fold_X/pretraining``), so the same variables switch it on, and writes every epoch's figures (losses, held-out
loss, lr, epoch time, the scheme's and the probe's figures) under ``stage1/`` and the pictures to its backends.
Only the backends: nnU-Net's ``LocalLogger`` takes a fixed key set (docs/nnunet_internals.md#logger); stage 1
keeps its own log (stage1_log.py).

Run names: ``<dataset> <configuration> fold <fold>: stage 1 (<scheme> pretraining)`` and ``...: stage 2 (<trainer>)``.
One ``nnUNetv2_train`` call runs both stages in one process, and nnU-Net makes stage 2's W&B run in the trainer's
``__init__``, before stage 1; W&B then answers a second ``wandb.init`` with the run already active. So stage 1 asks
W&B for a new run beside it (its ``reinit="create_new"`` setting) and finishes it at its end (ours).
"""
import os

from nnunetv2.training.logging import nnunet_logger
from nnunetv2.training.logging.nnunet_logger import MetaLogger

from nnunet_anatomask.trainers.stage1_callbacks import Stage1Callback

PREFIX = "stage1/"


def run_name(trainer, stage: str) -> str:
    """``Dataset990_Demo 3d_fullres fold 0: stage 1 (AnatoMask pretraining)``."""
    return f"{trainer.plans_manager.dataset_name} {trainer.configuration_name} fold {trainer.fold}: {stage}"


def name_runs(meta: MetaLogger, name: str) -> None:
    """Give every backend's run (W&B) this name."""
    for backend in meta.loggers:
        run = getattr(backend, "run", None)
        if run is not None:
            run.name = name


def allow_second_run() -> None:
    """Where a W&B run is already active in this process (stage 2's), let the next ``wandb.init`` make a new one."""
    wandb = nnunet_logger.wandb
    if wandb is not None and wandb.run is not None:
        wandb.setup(settings=wandb.Settings(reinit="create_new"))


def picture(path: str):
    """A PNG as the backends take it: a ``wandb.Image`` where W&B is installed, else the path."""
    wandb = nnunet_logger.wandb
    return wandb.Image(path) if wandb is not None else path


class ExperimentLog(Stage1Callback):
    """Stage 1 through nnU-Net's ``MetaLogger`` backends (none unless ``nnUNet_wandb_enabled=1``)."""

    def __init__(self):
        self.meta = None

    def on_run_start(self, runner) -> None:
        tr = runner.trainer
        allow_second_run()
        self.meta = MetaLogger(runner.folder, resume=runner.current_epoch > 0)
        name = run_name(tr, f"stage 1 ({runner.scheme.name} pretraining)")
        name_runs(self.meta, name)
        self.meta.update_config({
            "stage": "stage 1 (pretraining)", "scheme": runner.scheme.name, "trainer": type(tr).__name__,
            "dataset": tr.plans_manager.dataset_name, "configuration": tr.configuration_name, "fold": tr.fold,
            "epochs": runner.num_epochs, "iterations_per_epoch": runner.iterations, "batch_size": tr.batch_size,
            "patch_size": list(runner.grid.patch_size), "mask_cells": list(runner.grid.cells_per_axis)})
        if self.meta.loggers:
            kinds = ", ".join(type(backend).__name__ for backend in self.meta.loggers)
            runner.log.print(f"Experiment logger: {kinds}, run '{name}'")

    def log(self, key: str, value, step: int) -> None:
        for backend in self.meta.loggers:
            backend.log(PREFIX + key, value, step)

    def on_epoch_logged(self, runner, epoch: int, figures: dict) -> None:
        if not self.meta or not self.meta.loggers:
            return
        for key, value in figures.items():
            self.log(key, float(value), epoch)
        drawn = os.path.join(runner.folder, f"reconstruction_epoch_{epoch:04d}.png")
        if os.path.isfile(drawn):  # about ten per run: with the progress plot of the moment
            self.log("reconstruction", picture(drawn), epoch)
            self.log("progress", picture(os.path.join(runner.folder, "progress.png")), epoch)

    def on_run_end(self, runner, summary: dict) -> None:
        if not self.meta or not self.meta.loggers:
            return
        for key, value in summary.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                for backend in self.meta.loggers:
                    backend.log_summary(PREFIX + key, value)
        for backend in self.meta.loggers:
            run = getattr(backend, "run", None)
            if run is not None:
                run.finish()
