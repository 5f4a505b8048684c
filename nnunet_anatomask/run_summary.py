"""What a finished two-stage run achieved, in a few lines (the demo ends with it).

    python -m nnunet_anatomask.run_summary <nnUNet_results>/DatasetXXX/<trainer>__<plans>__<config>/fold_0

Reads nnU-Net's own validation/summary.json (Dice per class over the fold's validation cases), our
pretraining/summary.json (stage-1 loss and time; or fold_all's, when stage 1 ran once for every fold) and the
epoch timestamps nnU-Net logs in checkpoint_final.pth (stage-2 time).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Optional

import torch

from nnunet_anatomask.progress import format_seconds


def _json(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def stage1_summary(fold_dir: str) -> Optional[dict]:
    """pretraining/summary.json of this fold, else of fold_all (nnUNetv2_pretrain ... all)."""
    for folder in (fold_dir, os.path.join(os.path.dirname(fold_dir), "fold_all")):
        summary = _json(os.path.join(folder, "pretraining", "summary.json"))
        if summary is not None:
            return summary
    return None


def stage2_train_seconds(fold_dir: str) -> Optional[float]:
    """Sum of the stage-2 epoch durations nnU-Net logged (its final validation not included)."""
    path = os.path.join(fold_dir, "checkpoint_final.pth")
    if not os.path.isfile(path):
        return None
    log = torch.load(path, map_location="cpu", weights_only=False)["logging"]
    return float(sum(e - s for s, e in zip(log["epoch_start_timestamps"], log["epoch_end_timestamps"])))


def dice_lines(fold_dir: str) -> list[str]:
    validation = _json(os.path.join(fold_dir, "validation", "summary.json"))
    if validation is None:
        return ["stage-2 validation Dice: no validation/summary.json (stage 2 not finished)"]
    dataset = _json(os.path.join(os.path.dirname(fold_dir), "dataset.json")) or {}
    names = {str(v): k for k, v in dataset.get("labels", {}).items()}
    cases = len(validation.get("metric_per_case", []))
    per_class = ", ".join(f"{names.get(label, label)} {metrics['Dice']:.3f}"
                          for label, metrics in validation["mean"].items())
    return [f"stage-2 validation Dice ({cases} validation case{'s' if cases != 1 else ''}, nnU-Net's "
            f"validation/summary.json): mean {validation['foreground_mean']['Dice']:.3f}; per class: {per_class}"]


def stage1_lines(summary: Optional[dict]) -> list[str]:
    if summary is None:
        return ["stage 1: no pretraining/summary.json found"]
    time_s = summary.get("train_time_s", summary.get("wall_time_s"))
    return [f"stage-1 final loss ({summary['scheme']}): {summary['final_loss']:.4f} - per-cell normalised MSE on "
            f"masked cells: 1.0 is what predicting every cell's mean scores, 0 is perfect",
            f"stage-1 time: {format_seconds(time_s)} ({summary['epochs']} epochs x {summary['iterations_per_epoch']} "
            f"iterations)"]


def summarise(fold_dir: str) -> str:
    """The lines the demo prints at its end."""
    fold_dir = os.path.abspath(fold_dir)
    seconds = stage2_train_seconds(fold_dir)
    stage2 = "stage-2 time: " + (f"{format_seconds(seconds)} of training epochs (nnU-Net's final validation not "
                                 "included)" if seconds is not None else "n/a (no checkpoint_final.pth)")
    return "\n".join(["Results of " + os.path.relpath(fold_dir, os.path.dirname(os.path.dirname(
        os.path.dirname(fold_dir)))), *["  " + line for line in [*dice_lines(fold_dir),
                                                                  *stage1_lines(stage1_summary(fold_dir)), stage2]]])


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    print(summarise(sys.argv[1]))
