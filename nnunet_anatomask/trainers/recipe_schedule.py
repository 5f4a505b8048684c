"""A recipe's phases in epochs and the lr within each (docs/recipes.md).

Phase lengths are shares of the run, rounded, at least one epoch each (as every warm-up of this plugin,
knobs.warmup_epochs), so short runs keep every phase. Within a phase the lr is nnU-Net's: a linear rise
(``Lin_incr_LRScheduler``: peak x (k + 1) / length at the phase's k-th epoch) or poly decay
(``PolyLRScheduler_offset``: peak x (1 - k / length) ** 0.9). A parameter group's ``lr_scale`` (layer-wise decay)
multiplies it.
"""
from __future__ import annotations

from typing import Sequence

from torch.optim.lr_scheduler import _LRScheduler

from nnunet_anatomask import knobs
from nnunet_anatomask.recipes import POLY, WARMUP, Phase

POLY_EXPONENT = 0.9  # nnU-Net's


class RecipeError(ValueError):
    pass


def phase_bounds(phases: Sequence[Phase], num_epochs: int) -> list[tuple[int, int]]:
    """[(first epoch, end epoch)] of every phase; the last open-ended phase runs to ``num_epochs``."""
    if num_epochs < len(phases):
        raise RecipeError(f"this recipe has {len(phases)} phases ({', '.join(p.name for p in phases)}) and needs "
                          f"at least {len(phases)} stage-2 epochs, not {num_epochs}")
    bounds, start = [], 0
    for i, phase in enumerate(phases):
        left = len(phases) - i - 1  # phases after this one, one epoch each at least
        length = num_epochs - start if phase.share is None else knobs.warmup_epochs(phase.share, num_epochs)
        end = min(start + length, num_epochs - left)
        bounds.append((start, end))
        start = end
    bounds[-1] = (bounds[-1][0], num_epochs)
    return bounds


def lr_at(shape: str, peak: float, start: int, end: int, epoch: int) -> float:
    """The lr of a phase [start, end) at ``epoch``."""
    k, length = epoch - start, end - start
    if shape == WARMUP:
        return peak * (k + 1) / length
    if shape == POLY:
        return peak * (1 - max(k, 0) / length) ** POLY_EXPONENT
    raise RecipeError(f"unknown lr shape {shape!r}")


class PhaseLR(_LRScheduler):
    """One phase's lr for every parameter group (times its ``lr_scale``); nnU-Net calls ``step(epoch)``."""

    def __init__(self, optimizer, shape: str, peak_lr: float, start: int, end: int, current_step: int = None):
        self.shape, self.max_lr, self.start, self.end = shape, peak_lr, start, end
        self.ctr = 0
        super().__init__(optimizer, current_step if current_step is not None else -1)

    def step(self, current_step=None):
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        lr = lr_at(self.shape, self.max_lr, self.start, self.end, current_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
