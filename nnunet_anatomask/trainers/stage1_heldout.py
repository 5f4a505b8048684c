"""The held-out reconstruction loss of stage 1, and checkpoint_best.pth by it (docs/watching.md).

Every epoch the student reconstructs fixed crops of the fold's validation cases under fixed random masks at the
scheme's ``mask_ratio``; the loss is the reconstruction part of every scheme's loss (MSE on masked cells against
per-cell normalised targets; losses.py), so 1.0 is what predicting each cell's mean scores and 0 is perfect. Ours:
nnssl tracks a validation loss the same way, and MONAI's SwinUNETR pretraining keeps its best checkpoint by it;
fixed masks (not the scheme's own selection, which depends on a teacher and the epoch) make epochs and schemes
compare.

Crops and masks are drawn once, by generators of their own (fixed_crops.py), so the global random streams that
training draws from are never touched: a run trains bit-identically with or without this loss. The forwards run
without gradients, in batches of the plans' batch size, and never more of them than nnU-Net's validation makes
per epoch (``validation_iterations x batch size``), so the cost stays at or below nnU-Net's validation.
Fold ``all`` holds no case out (nnU-Net validates fold ``all`` on its training cases): no held-out loss and no
checkpoint_best there, which the log says.
"""
from time import time

import torch
from nnunetv2.utilities.helpers import dummy_context

from nnunet_anatomask.pretraining import losses, masking
from nnunet_anatomask.pretraining.grid import MaskGrid
from nnunet_anatomask.pretraining.schemes.masked_modelling import MaskingConfig
from nnunet_anatomask.trainers.fixed_crops import fixed_crops, validation_forwards
from nnunet_anatomask.trainers.stage1_callbacks import Stage1Callback

HELDOUT_SEED = 2024  # ours: the crops' and masks' own generators; any constant does


def fixed_masks(n: int, grid: MaskGrid, ratio: float, seed: int = HELDOUT_SEED) -> torch.Tensor:
    """``n`` random cell masks ``[n, N]`` (MAE's random masking at ``ratio``) from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    key = torch.rand(n, grid.num_cells, generator=generator)
    return masking.random_mask(key, masking.num_masked(grid.num_cells, ratio))


def no_held_out_case(trainer) -> str:
    """Why this fold has no held-out loss, or '' when it has validation cases to hold out."""
    if trainer.fold == "all":
        return ("fold 'all' trains on every case, so there is no held-out reconstruction loss and no "
                "checkpoint_best.pth; pretrain on fold 0-4 for them (docs/watching.md)")
    return ""


class HeldOutLoss(Stage1Callback):
    """Adds ``heldout_loss`` (and ``heldout_time``, seconds) to every epoch's figures."""

    def __init__(self, crops: int):
        self.wanted = crops
        self.images = self.masks = self.grid = None

    def on_run_start(self, runner) -> None:
        tr = runner.trainer
        why = no_held_out_case(tr)
        _, validation = tr.get_tr_and_val_datasets()
        if not why and not validation.identifiers:
            why = "the fold has no validation cases (splits_final.json), so there is no held-out reconstruction loss"
        if why:
            runner.log.print(f"Held-out loss: none: {why}")
            return
        budget = validation_forwards(runner.iterations, tr.batch_size)
        n = min(self.wanted, budget)
        crops = fixed_crops(validation, n, tr.configuration_manager.patch_size, HELDOUT_SEED)
        ratio = getattr(runner.config, "mask_ratio", MaskingConfig.mask_ratio)  # a scheme that masks: its own
        self.images, self.masks, self.grid = crops.images, fixed_masks(n, runner.grid, ratio), runner.grid
        self.batch_size, self.device = tr.batch_size, runner.device
        runner.log.print(f"Held-out loss: {n} fixed crops of {len(set(crops.cases))} validation cases, fixed "
                         f"masks at ratio {ratio:g}, every epoch (at most nnU-Net's {budget} validation forwards)")

    def evaluate(self, model: torch.nn.Module) -> float:
        """Masked MSE against per-cell normalised targets over every fixed crop and masked cell, without gradients;
        the model's train/eval mode is restored."""
        was_training = model.training
        model.eval()
        total = count = 0.0
        cuda = self.device.type == "cuda"
        with torch.no_grad(), torch.autocast("cuda", enabled=True) if cuda else dummy_context():
            for first in range(0, len(self.images), self.batch_size):
                images = self.images[first:first + self.batch_size].to(self.device, non_blocking=True)
                mask = self.masks[first:first + self.batch_size].to(self.device)
                prediction = model(images, mask.view(mask.shape[0], *self.grid.cells_per_axis))
                errors = losses.per_cell_error(prediction, images, self.grid)
                total = total + (errors * mask).sum()
                count = count + mask.sum()
        model.train(was_training)
        return float(total / count)

    def on_epoch_end(self, runner, epoch: int, figures: dict) -> None:
        if self.images is None:
            return
        start = time()
        figures["heldout_loss"] = self.evaluate(runner.model)
        figures["heldout_time"] = time() - start


class BestCheckpoint(Stage1Callback):
    """checkpoint_best.pth: the epoch with the lowest held-out loss so far, as nnU-Net keeps its best by the EMA
    pseudo-Dice; written atomically like every checkpoint. Stage 2 still starts from checkpoint_final.pth."""

    def __init__(self):
        self.best, self.best_epoch = float("inf"), None

    def on_run_start(self, runner) -> None:
        """After a resume: the best of the epochs the log holds (an unfinished run's later best is re-earned)."""
        history = runner.log.values.get("heldout_loss", [])[:runner.current_epoch]
        finite = [(value, epoch) for epoch, value in enumerate(history) if value == value]  # NaN != NaN
        if finite:
            self.best, self.best_epoch = min(finite)

    def on_epoch_logged(self, runner, epoch: int, figures: dict) -> None:
        loss = figures.get("heldout_loss")
        if loss is None or not loss < self.best:
            return
        self.best, self.best_epoch = loss, epoch
        runner.save(runner.best_checkpoint)
        runner.log.print(f"Yayy! New best held-out reconstruction loss: {loss:.4f}")

    def on_run_end(self, runner, summary: dict) -> None:
        if self.best_epoch is None:
            return
        summary.update(best_heldout_loss=self.best, best_heldout_epoch=self.best_epoch,
                       checkpoint_best=runner.best_checkpoint)
