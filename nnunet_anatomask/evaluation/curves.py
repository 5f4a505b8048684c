"""Stage-2 learning curves from nnU-Net's own log, and where they level off.

nnU-Net logs, after every epoch, the pseudo-Dice of the validation patches it drew that epoch (``mean_fg_dice``,
foreground classes averaged) and its moving average (``ema_fg_dice``, 0.9 old + 0.1 new); the log is the
``logging`` entry of every checkpoint. A finished run's curve is kept as OUT/curves/<trainer>/fold_<k>.json.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

KEYS = ("mean_fg_dice", "ema_fg_dice", "train_losses", "val_losses", "lrs")
TAIL = 0.2  # ours: a curve's plateau value is its mean over the last 20 % of the epochs


def read_curve(checkpoint: str, iterations_per_epoch: int) -> dict:
    """The per-epoch values of KEYS and the epoch durations from a stage-2 checkpoint."""
    import torch
    log = torch.load(checkpoint, map_location="cpu", weights_only=False)["logging"]
    seconds = [float(e - s) for s, e in zip(log["epoch_start_timestamps"], log["epoch_end_timestamps"])]
    return {"iterations_per_epoch": iterations_per_epoch, "epoch_seconds": seconds,
            **{k: [float(v) for v in log[k]] for k in KEYS}}


def save_curve(checkpoint: str, path: str, iterations_per_epoch: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(read_curve(checkpoint, iterations_per_epoch), f)


def load_curve(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def iterations(curve: dict) -> np.ndarray:
    """Stage-2 iterations done at the end of each logged epoch."""
    return (np.arange(len(curve["mean_fg_dice"])) + 1) * curve["iterations_per_epoch"]


def plateau(values: Sequence[float], tail: float = TAIL) -> tuple[float, float]:
    """(mean of the last ``tail`` of the values, minus the mean of the ``tail`` before it): the level a curve
    ends at and how much it still rose over its last stretch."""
    v = np.asarray(values, dtype=np.float64)
    n = max(1, int(round(tail * len(v))))
    last = float(v[-n:].mean())
    before = v[-2 * n: -n]
    return last, last - float(before.mean()) if len(before) else float("nan")
