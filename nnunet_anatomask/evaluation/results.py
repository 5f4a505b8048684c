"""The finished runs as numbers: per-case Dice of every (trainer, fraction, start lr, seed), cells of runs x
cases, differences to Scratch with their intervals, learning-curve plateaus and the measured costs."""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from nnunet_anatomask.evaluation import curves, statistics
from nnunet_anatomask.evaluation.errors import EvaluationError
from nnunet_anatomask.evaluation.folds import Stage2Run
from nnunet_anatomask.evaluation.layout import arm_name, split_arm
from nnunet_anatomask.evaluation.metrics import case_dice
from nnunet_anatomask.evaluation.pipeline import Run
from nnunet_anatomask.evaluation.trainer_names import SCRATCH


@dataclass
class Cell:
    """One trainer at one fraction and start lr: its finished runs (seeds) x the test cases."""
    trainer: str
    fraction: float
    initial_lr: Optional[float]
    seeds: list
    cases: list
    classes: list
    dice: np.ndarray           # [runs, cases, classes], NaN where a class is absent from reference and prediction

    @property
    def per_case(self) -> np.ndarray:
        """[runs, cases]: per case the mean Dice over the foreground classes present."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(self.dice, axis=2)

    def rows(self, seeds: list) -> np.ndarray:
        return self.per_case[[self.seeds.index(s) for s in seeds]]


def collect(run: Run, wanted: list[Stage2Run]) -> dict:
    """{(trainer, fraction, lr): Cell} over the finished predictions of the wanted runs."""
    found: dict = {}
    for r in wanted:
        for tr in run.trainers_for(r):
            path = run.layout.summary(tr, r.fold)
            if os.path.isfile(path):
                found.setdefault((tr, r.fraction, r.initial_lr), []).append((r.seed, *case_dice(path)))
    cells = {}
    for (tr, fraction, lr), entries in found.items():
        entries.sort(key=lambda e: e[0])
        cases, classes = entries[0][1], entries[0][3]
        if any(e[1] != cases for e in entries):
            raise EvaluationError(f"the runs of {tr} at fraction {fraction} were evaluated on different test cases. "
                                  f"Fix: delete their prediction folders (OUT/predictions/{tr}) and rerun.")
        cells[(tr, fraction, lr)] = Cell(tr, fraction, lr, [e[0] for e in entries], cases, classes,
                                         np.stack([e[2] for e in entries]))
    return cells


def compare(cell: Cell, base: Cell) -> statistics.Difference:
    """cell - base over their common seeds (paired) and the same test cases."""
    if cell.cases != base.cases:
        raise EvaluationError(f"{cell.trainer} and {base.trainer} were evaluated on different test cases. Fix: "
                              f"delete both prediction folders and rerun.")
    seeds = [s for s in cell.seeds if s in base.seeds]
    if not seeds:
        raise EvaluationError(f"{cell.trainer} and {base.trainer} share no seed at fraction {cell.fraction}")
    return statistics.difference(cell.rows(seeds), base.rows(seeds))


def verdict(d: statistics.Difference) -> str:
    """'better' / 'worse' when the interval excludes 0, else 'not shown' (no difference shown either way)."""
    return "better" if d.low > 0 else "worse" if d.high < 0 else "not shown"


def entry(cell: Cell, base: Optional[Cell], labelled: int) -> dict:
    """One row of results.json."""
    e = {"trainer": cell.trainer, "fraction": cell.fraction, "labelled_cases": labelled,
         "initial_lr": cell.initial_lr, "seeds": cell.seeds, "runs": len(cell.seeds), "test_cases": len(cell.cases),
         "mean_dice": float(cell.per_case.mean()), "run_means": [float(x) for x in cell.per_case.mean(1)]}
    if base is not None and base is not cell:
        d = compare(cell, base)
        e.update({"vs": base.trainer, "vs_initial_lr": base.initial_lr, **asdict(d), "verdict": verdict(d)})
    return e


def table(run: Run, cells: dict) -> list[dict]:
    """Every cell at the default lr, schemes against Scratch on the same fraction."""
    counts = dict(zip(run.fractions, run.counts()))
    return [entry(cells[(tr, f, None)], cells.get((SCRATCH, f, None)), counts[f])
            for f in run.fractions for tr in run.all_trainers() if (tr, f, None) in cells]


def factor_table(run: Run, cells: dict) -> list[dict]:
    """Every scheme arm pretrained longer (``_x<f>``) against the same scheme at the size's stage 1 (x1), paired by
    seed, at each fraction where both ran: what the longer stage 1 changed."""
    counts = dict(zip(run.fractions, run.counts()))
    out = []
    for f in run.fractions:
        for arm in run.stage2_trainers():
            trainer, factor = split_arm(arm)
            base = cells.get((arm_name(trainer, 1), f, None))
            if factor != 1 and base is not None and (arm, f, None) in cells:
                out.append(entry(cells[(arm, f, None)], base, counts[f]))
    return out


def lr_table(run: Run, cells: dict) -> list[dict]:
    """At the smallest fraction, every trainer at each of its start lrs (its default, the lr comparison's) and
    Scratch at each of its start lrs, each against Scratch at its best start lr (the highest mean Dice): every
    trainer is compared with Scratch at Scratch's own best lr."""
    lrs = [None, *([run.lr_study] if run.lr_study is not None else []),
           *(lr for lr in run.scratch_lrs if lr != run.lr_study)]
    if len(lrs) == 1:
        return []
    f = min(run.fractions)
    scratch = [cells[(SCRATCH, f, lr)] for lr in lrs if (SCRATCH, f, lr) in cells]
    best = max(scratch, key=lambda c: c.per_case.mean()) if scratch else None
    count = run.counts([f])[0]
    return [entry(cells[(tr, f, lr)], best, count) for tr in run.all_trainers() for lr in lrs
            if (tr, f, lr) in cells]


def plateaus(run: Run, wanted: list[Stage2Run]) -> list[dict]:
    """Per trainer, fraction and lr: the pseudo-Dice plateau (mean over the last 20 % of epochs) and its rise over
    that stretch, each averaged over the runs."""
    groups: dict = {}
    for r in wanted:
        for tr in run.trainers_for(r):
            path = run.curve_file(tr, r.fold)
            if os.path.isfile(path):
                groups.setdefault((tr, r.fraction, r.initial_lr), []).append(
                    curves.plateau(curves.load_curve(path)["mean_fg_dice"]))
    return [{"trainer": tr, "fraction": f, "initial_lr": lr, "runs": len(v),
             "plateau": float(np.mean([p[0] for p in v])), "rise": float(np.mean([p[1] for p in v]))}
            for (tr, f, lr), v in groups.items()]


def costs(run: Run) -> dict:
    """Measured wall and CPU seconds from OUT/timings.json: data + plan, stage 1 per scheme, the mean stage-2 run
    and prediction, and what one scheme costs (its stage 1 + its stage-2 runs with their predictions)."""
    path = os.path.join(run.out, "timings.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        t = json.load(f)
    out = {}
    for kind in ("wall_s", "cpu_s"):
        v = {k: x[kind] for k, x in t.items()}
        stage2 = [x for k, x in v.items() if k.startswith("stage2 ")]
        predict = [x for k, x in v.items() if k.startswith("predict ")]
        c = {"total": sum(v.values()), "data_and_plan": v.get("data", 0) + v.get("plan_and_preprocess", 0),
             "stage1": {k[len("stage1 "):]: x for k, x in v.items() if k.startswith("stage1 ")},
             "stage2_run": float(np.mean(stage2)) if stage2 else None, "stage2_runs": len(stage2),
             "predict": float(np.mean(predict)) if predict else None}
        if stage2 and predict:
            runs = sum(r.initial_lr is None for r in run.fold_table()[1])  # the table's runs (fraction seeds too)
            c["per_scheme"] = {k: x + runs * (c["stage2_run"] + c["predict"]) for k, x in c["stage1"].items()}
        out[kind] = c
    return out
