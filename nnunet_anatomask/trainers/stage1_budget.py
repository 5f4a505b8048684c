"""The budget of a found stage-1 checkpoint against the one this run asks for (docs/usage.md, "A found stage-1
checkpoint with another budget").

A stage-1 checkpoint found in fold_X/pretraining or fold_all/pretraining is used as it is, whatever budget made it:
``nnUNet_anatomask_iters_per_epoch`` also sets stage 2's iterations, so a difference alone is no reason to refuse.
The log line shows both budgets, and what to do to pretrain again.
"""
from __future__ import annotations

import json
import os
from typing import Optional

Budget = tuple[Optional[int], Optional[int]]  # (epochs, iterations per epoch); None where a checkpoint does not say


def checkpoint_budget(ckpt: dict, path: str) -> Budget:
    """The checkpoint's own record (stage-1 checkpoints of this version), else its epoch count and the summary.json beside it."""
    budget = ckpt.get("budget") or {}
    epochs = budget.get("epochs", ckpt.get("current_epoch"))
    iterations = budget.get("iterations_per_epoch")
    summary = os.path.join(os.path.dirname(path), "summary.json")
    if iterations is None and os.path.isfile(summary):
        with open(summary) as f:
            iterations = json.load(f).get("iterations_per_epoch")
    return epochs, iterations


def describe(budget: Budget) -> str:
    epochs, iterations = budget
    return f"{epochs} epochs x {iterations if iterations is not None else '?'} iterations"


def reuse_line(path: str, ckpt: dict, this_run: Budget) -> str:
    """The log line of a reused stage-1 checkpoint: its scheme, its budget and this run's; the fix if they differ."""
    found = checkpoint_budget(ckpt, path)
    line = (f"Using the stage-1 checkpoint {path} ({ckpt['scheme']}, {describe(found)}; this run's stage-1 budget: "
            f"{describe(this_run)})")
    if all(a is None or a == b for a, b in zip(found, this_run)):
        return line
    return (line + ". The budgets differ; the checkpoint is used as it is. To pretrain with this run's budget "
            f"instead, move {os.path.dirname(path)} away and run again (nnUNet_anatomask_pretrain_epochs, "
            f"nnUNet_anatomask_iters_per_epoch; docs/usage.md)")
