"""Callbacks of the stage-1 runner: how tools and features join the loop without replacing any of its parts.

A callback subclasses ``Stage1Callback`` and overrides what it needs; ``Stage1Runner.add_callback`` registers it
(``cli.pretrain(args, callbacks=[...])`` for a whole ``nnUNetv2_pretrain`` run). The runner calls, in order:
``on_epoch_start``; per iteration ``on_step_end`` (it sees the loader's whole batch, labels included, and may
return figures to log, 0-d tensors averaged over the epoch like the scheme's); ``on_epoch_end`` with the epoch's
figures before they are logged (a callback may add entries, e.g. a held-out loss); ``on_checkpoint`` after every
checkpoint written. Under DDP every rank calls them; only rank 0 writes.
"""
from typing import Optional

import torch

from nnunet_anatomask.pretraining.schemes.base import StepOutput


class Stage1Callback:
    """Every method is a no-op; ``runner`` is the Stage1Runner (its model, scheme, loop, grid, log, folder)."""

    def on_epoch_start(self, runner, epoch: int) -> None:
        """Before the epoch's first step (after the lr is set)."""

    def on_step_end(self, runner, epoch: int, batch: dict, out: StepOutput) -> Optional[dict[str, torch.Tensor]]:
        """After every optimiser step: the loader's batch and the scheme's output; returns extra figures or None."""
        return None

    def on_epoch_end(self, runner, epoch: int, figures: dict[str, float]) -> None:
        """After the epoch's steps, before its figures are logged and its checkpoint is written; may add figures."""

    def on_checkpoint(self, runner, path: str) -> None:
        """After a stage-1 checkpoint was written to ``path`` (rank 0)."""
