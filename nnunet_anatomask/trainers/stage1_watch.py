"""The callbacks that make a stage-1 run watchable, as the runner adds them (docs/watching.md).

In this order: the progress bar (it clears its line before anything else prints), the held-out reconstruction
loss and checkpoint_best.pth (``nnUNet_anatomask_heldout_crops``, 0 = off), the linear probe (opt-in,
``nnUNet_anatomask_probe_every``), a tool's own callbacks (``Stage1Runner.add_callback``) and nnU-Net's experiment
logger last, so that it sends what the others added.
Under DDP every rank computes the held-out loss and the probe (same weights, same fixed crops: the ranks stay in
step); the bar and the logger live on rank 0.
"""
from typing import Sequence

from nnunet_anatomask import knobs
from nnunet_anatomask.trainers import stage1_ddp
from nnunet_anatomask.trainers.experiment_log import ExperimentLog
from nnunet_anatomask.trainers.stage1_callbacks import Stage1Callback
from nnunet_anatomask.trainers.stage1_heldout import BestCheckpoint, HeldOutLoss
from nnunet_anatomask.trainers.stage1_probe import LinearProbe
from nnunet_anatomask.trainers.stage1_progress import ProgressBar


def watch_callbacks(added: Sequence[Stage1Callback] = ()) -> list[Stage1Callback]:
    """The callbacks of a stage-1 run: the default ones, from the knobs (read and checked before any work:
    knobs.check_all), with ``added`` before the experiment logger."""
    first = stage1_ddp.rank() == 0
    callbacks: list[Stage1Callback] = [ProgressBar()] if first else []
    crops = knobs.read_count(knobs.HELDOUT_CROPS)
    if crops:
        callbacks += [HeldOutLoss(crops), BestCheckpoint()]
    every = knobs.read_count(knobs.PROBE_EVERY)
    if every:
        callbacks.append(LinearProbe(every))
    return callbacks + list(added) + ([ExperimentLog()] if first else [])
