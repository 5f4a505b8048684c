"""Callbacks of the stage-1 runner: how features and tools join the loop without replacing any of its parts.

A callback subclasses ``Stage1Callback`` and overrides what it needs. The runner's own (trainers/stage1_watch.py:
the progress bar, the held-out loss, checkpoint_best, the linear probe, nnU-Net's experiment logger;
docs/watching.md) are added when it builds; a tool adds its own with ``Stage1Runner.add_callback``
(``cli.pretrain(args, callbacks=[...])`` for a whole ``nnUNetv2_pretrain`` run). The runner calls every callback's
method at the points below, in order:

``on_run_start`` once, after building (and resuming) and before the first epoch; ``on_epoch_start``; per iteration
``on_step_end`` (it sees the loader's whole batch, labels included, and the scheme's output, and may return figures
to log, 0-d tensors averaged over the epoch like the scheme's); ``on_epoch_end`` with the epoch's figures before
they are logged (a callback may add entries, e.g. a held-out loss); ``on_checkpoint`` after every checkpoint written
(rank 0); ``on_epoch_logged`` after the epoch was logged, pictured and checkpointed (``runner.current_epoch`` is then
epoch + 1); ``on_run_end`` with the run's summary before it is written (a callback may add entries). Under DDP every
rank calls them, but ``on_checkpoint`` and ``on_run_end`` only rank 0 (which alone writes logs, pictures,
checkpoints and the summary). The runner times every method a callback overrides (``timed_call``) and writes the
seconds to summary.json (``callback_time_s``, docs/watching.md).
"""
from time import perf_counter
from typing import Optional

import torch

from nnunet_anatomask.pretraining.schemes.base import StepOutput


class Stage1Callback:
    """Every method is a no-op; ``runner`` is the Stage1Runner (its model, scheme, loop, grid, log, folder,
    trainer)."""

    def on_run_start(self, runner) -> None:
        """Once, before the first epoch of this process (after a resume has restored the log)."""

    def on_epoch_start(self, runner, epoch: int) -> None:
        """Before the epoch's first step (after the lr is set)."""

    def on_step_end(self, runner, epoch: int, batch: dict, out: StepOutput) -> Optional[dict[str, torch.Tensor]]:
        """After every optimiser step: the loader's batch and the scheme's output; returns extra figures or None."""
        return None

    def on_epoch_end(self, runner, epoch: int, figures: dict[str, float]) -> None:
        """After the epoch's steps, before its figures are logged and its checkpoint is written; may add figures."""

    def on_checkpoint(self, runner, path: str) -> None:
        """After a stage-1 checkpoint was written to ``path`` (rank 0)."""

    def on_epoch_logged(self, runner, epoch: int, figures: dict[str, float]) -> None:
        """After the epoch's figures were logged, its picture drawn and its checkpoint_latest written."""

    def on_run_end(self, runner, summary: dict) -> None:
        """After checkpoint_final was written, before summary.json is: may add entries to ``summary``."""


def timed_call(seconds: dict[str, float], callback: Stage1Callback, event: str, *args):
    """``callback``'s ``event`` method called with ``args``; where the callback's class overrides the no-op, the
    call's wall time is added to ``seconds["Class.event"]`` (ours: what each watch feature costs a run)."""
    method = getattr(callback, event)
    if getattr(type(callback), event) is getattr(Stage1Callback, event):
        return method(*args)
    start = perf_counter()
    try:
        return method(*args)
    finally:
        key = f"{type(callback).__name__}.{event}"
        seconds[key] = seconds.get(key, 0.0) + perf_counter() - start
