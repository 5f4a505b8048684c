"""What a run will cost, printed before it starts: from the size's per-piece seconds (``protocol.Cost``).

work = sum over schemes and stage-1 factors of stage 1 + (schemes x factors x recipes + 1) x runs x (stage-2 run
+ prediction) + Scratch's runs at its other start lrs x (stage-2 run + prediction), where runs = the (fraction,
seed) pairs (+ seeds for the learning-rate comparison), a stage-2 run = iterations x seconds per iteration +
overhead, and a scheme's stage 1 = its iterations x factor x seconds per stage-2 iteration x its ratio + the
overhead of a run;
wall time = data and plan + work / jobs (steps side by side on a machine with nothing else to do).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from nnunet_anatomask.evaluation.layout import arm_name
from nnunet_anatomask.evaluation.protocol import Size
from nnunet_anatomask.evaluation.trainer_names import short_name


@dataclass(frozen=True)
class Estimate:
    total_s: float
    stage1_s: dict             # scheme -> seconds of work
    run_s: float               # one stage-2 run with its prediction, seconds of work
    runs_per_trainer: int
    jobs: int
    per_added_scheme_s: float  # wall seconds another scheme adds (default stage-1 ratio)


def stage1_seconds(size: Size, scheme: str, factor: float = 1) -> float:
    ratio = size.cost.stage1_ratio.get(scheme, size.cost.stage1_ratio_other)
    return size.pretrain_iterations * factor * size.cost.stage2_iteration_s * ratio + size.cost.stage2_overhead_s


def stage1_seconds_left(size: Size, scheme: str, factor: float, latest_checkpoint: str) -> float:
    """``stage1_seconds`` for the epochs still to run: a stopped stage 1 resumes at its latest checkpoint's epoch."""
    full = stage1_seconds(size, scheme, factor)
    if not os.path.isfile(latest_checkpoint):
        return full
    import torch
    epoch = torch.load(latest_checkpoint, map_location="cpu", weights_only=False)["current_epoch"]
    epochs = round(size.pretrain_epochs * factor)
    return full * max(epochs - epoch, 0) / epochs


def stage2_seconds(size: Size) -> float:
    """One stage-2 run without its prediction."""
    return size.finetune_iterations * size.cost.stage2_iteration_s + size.cost.stage2_overhead_s


def estimate(size: Size, scheme_trainers: Sequence[str], runs_per_trainer: int, jobs: int = 1,
             factors: Sequence[float] = (1,), recipes: int = 1, scratch_only: int = 0) -> Estimate:
    c = size.cost
    run_s = stage2_seconds(size) + c.predict_s
    stage1 = {short_name(arm_name(t, f)): stage1_seconds(size, short_name(t), f)
              for f in factors for t in scheme_trainers}
    work = sum(stage1.values()) + (len(stage1) * recipes + 1) * runs_per_trainer * run_s + scratch_only * run_s
    added = sum(stage1_seconds(size, "", f) + recipes * runs_per_trainer * run_s for f in factors) / jobs
    return Estimate(c.data_and_plan_s + work / jobs, stage1, run_s, runs_per_trainer, jobs, added)


def describe(size: Size, e: Estimate) -> str:
    """Two lines for the console and the report."""
    stage1 = ", ".join(f"{k} {v / 60:.0f} min" for k, v in e.stage1_s.items())
    return (f"estimated wall time {e.total_s / 3600:.1f} h ({e.total_s / 60:.0f} min with {e.jobs} job(s) side by "
            f"side; {size.cost.source}): stage 1 {stage1 or 'none'}; {e.runs_per_trainer} stage-2 runs per trainer "
            f"at {e.run_s / 60:.1f} min each (training + prediction)\n"
            f"  each further scheme adds about {e.per_added_scheme_s / 60:.0f} min")
