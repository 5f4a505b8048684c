"""``python -m nnunet_anatomask.evaluate``: the command line of the harness, the only place that exits."""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from typing import Optional, Sequence

from nnunet_anatomask.evaluation.anatomy_sources import SourceMissing
from nnunet_anatomask.evaluation.errors import EvaluationError
from nnunet_anatomask.evaluation.estimate import describe, estimate
from nnunet_anatomask.evaluation.protocol import SIZES, Size
from nnunet_anatomask.evaluation.record import check_same_run
from nnunet_anatomask.evaluation.trainer_names import FULL, SCRATCH, cnn_recipes, scheme_trainers


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m nnunet_anatomask.evaluate",
                                description="Every masking scheme vs nnUNetTrainerScratch across label fractions, "
                                            "through the real nnU-Net pipeline. Resumable: rerun the same command.")
    p.add_argument("--size", choices=sorted(SIZES), required=True,
                   help="; ".join(f"{k}: {v.note}" for k, v in SIZES.items()))
    p.add_argument("--output", default=None, help="working folder (default ./evaluation_output/<size>)")
    p.add_argument("--schemes", nargs="+", default=None, help="default: every registered scheme")
    p.add_argument("--fractions", nargs="+", type=float, default=None,
                   help="label fractions of the labelled training cases (default: the size's)")
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="stage-2 seeds: runs per trainer and fraction (default: the size's, 3)")
    p.add_argument("--fraction-seeds", action="append", default=[], metavar="FRACTION=SEEDS",
                   help="other seeds at one fraction, e.g. 0.05=0,1,2,3,4 (more seeds where the variance is "
                        "largest); repeat for several fractions")
    p.add_argument("--stage1-factors", nargs="+", type=float, default=None, metavar="F",
                   help="stage-1 lengths as factors of the size's stage-1 epochs, each scheme pretrained once per "
                        "factor and fine-tuned from each (default: 1); e.g. 1 10")
    p.add_argument("--recipes", nargs="+", default=[FULL], metavar="RECIPE",
                   help=f"stage-2 recipes every scheme is fine-tuned with, each against Scratch (default: {FULL}; "
                        f"known: {', '.join(cnn_recipes())}; docs/recipes.md)")
    p.add_argument("--scratch-lrs", nargs="+", type=float, default=[], metavar="LR",
                   help="also train Scratch at these start lrs at the smallest fraction (every seed): every trainer is "
                        "then compared with Scratch at its best start lr")
    p.add_argument("--lr-study", type=float, default=None, metavar="LR",
                   help="also train every trainer at the smallest fraction with stage-2 start lr LR (every seed) "
                        "and compare it with the default")
    p.add_argument("--budget", nargs=3, type=int, default=None,
                   metavar=("PRETRAIN_EPOCHS", "FINETUNE_EPOCHS", "ITERS_PER_EPOCH"),
                   help="override the size's run lengths (a quick look; the report says so)")
    p.add_argument("--jobs", type=int, default=None,
                   help="training processes side by side (default: the size's; cpu: 2, one torch thread each)")
    p.add_argument("--device", choices=("cpu", "cuda", "mps"), default=None,
                   help="default: cuda when available, else cpu")
    p.add_argument("--stop-after", choices=("data", "plan", "stage1"), default=None,
                   help="stop after this step (a later run without it resumes)")
    p.add_argument("--report-only", action="store_true", help="only rewrite the report from finished steps")
    p.add_argument("--estimate", action="store_true", help="only print the estimated wall time")
    return p.parse_args(argv)


def with_budget(size: Size, budget: Optional[Sequence[int]]) -> Size:
    if not budget:
        return size
    if min(budget) < 1:
        raise EvaluationError(f"--budget {' '.join(map(str, budget))}: every value must be >= 1.")
    return replace(size, pretrain_epochs=budget[0], finetune_epochs=budget[1], iters_per_epoch=budget[2],
                   save_every=min(size.save_every, budget[0], budget[1]),
                   note=size.note + f"; BUDGET OVERRIDDEN with --budget {' '.join(map(str, budget))}")


def parse_fraction_seeds(items: Sequence[str], fractions: Sequence[float]) -> dict:
    """{fraction: [seeds]} from '0.05=0,1,2,3,4' items; each fraction one of the run's."""
    out = {}
    for item in items:
        try:
            fraction, seeds = item.split("=")
            fraction, seeds = float(fraction), [int(x) for x in seeds.split(",") if x.strip()]
        except ValueError:
            raise EvaluationError(f"--fraction-seeds {item}: write FRACTION=SEED,SEED,... e.g. 0.05=0,1,2,3,4.") \
                from None
        if fraction not in fractions:
            raise EvaluationError(f"--fraction-seeds {item}: {fraction:g} is not one of the fractions "
                                  f"{' '.join(f'{f:g}' for f in fractions)}. Fix: name one of them.")
        if not seeds or len(set(seeds)) != len(seeds):
            raise EvaluationError(f"--fraction-seeds {item}: give each seed once, at least one.")
        out[fraction] = seeds
    return out


def check_factors(factors: Optional[Sequence[float]]) -> list:
    factors = list(factors or [1])
    bad = [f for f in factors if not f > 0 or round(f, 6) != f]
    if bad or len(set(factors)) != len(factors):
        raise EvaluationError(f"--stage1-factors {' '.join(f'{f:g}' for f in factors)}: each factor once, positive "
                              f"(e.g. 1 10).")
    return [int(f) if f == int(f) else f for f in factors]


def default_device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def run_evaluation(a: argparse.Namespace) -> str:
    """The evaluation the parsed arguments ask for; returns the report's path. Raises EvaluationError."""
    from nnunet_anatomask.evaluation.pipeline import Run, print_line
    size = with_budget(SIZES[a.size], a.budget)
    device = a.device or default_device()
    out = os.path.abspath(a.output or os.path.join("evaluation_output", a.size))
    if a.seeds is not None and len(set(a.seeds)) != len(a.seeds):
        raise EvaluationError(f"--seeds {' '.join(map(str, a.seeds))}: each seed once, please.")
    if any(lr <= 0 for lr in a.scratch_lrs):
        raise EvaluationError(f"--scratch-lrs {' '.join(map(str, a.scratch_lrs))}: every start lr must be > 0.")
    fractions = list(a.fractions or size.fractions)
    run = Run(size, out, scheme_trainers(a.schemes), fractions,
              list(a.seeds if a.seeds is not None else size.seeds), device, a.lr_study,
              jobs=a.jobs or size.jobs, log=print_line,
              stage1_factors=check_factors(a.stage1_factors),
              fraction_seeds=parse_fraction_seeds(a.fraction_seeds, fractions), recipes=list(a.recipes),
              scratch_lrs=sorted(set(a.scratch_lrs)))
    _, wanted = run.fold_table()
    shared = [r for r in wanted if run.trainers_for(r) != [SCRATCH]]  # the rest: Scratch's other start lrs
    guess = describe(size, estimate(size, run.trainers, len(shared), run.jobs, run.stage1_factors,
                                    recipes=len(run.recipes), scratch_only=len(wanted) - len(shared)))
    if a.estimate:
        print(guess)
        return guess
    os.makedirs(out, exist_ok=True)
    # nnunetv2.paths reads these when first imported: set them before the report or the predictor imports it
    lay = run.layout
    os.environ.update({"nnUNet_raw": lay.raw, "nnUNet_preprocessed": lay.preprocessed, "nnUNet_results": lay.results})
    if device == "cpu":
        os.environ["nnUNet_def_n_proc"] = "1"
    from nnunet_anatomask.evaluation.report import write_report
    run.log(f"evaluate --size {a.size}: {size.note}\n  output {out}; trainers {run.all_trainers()}; "
            f"fractions {run.fractions}; seeds {run.seeds}"
            + "".join(f" ({f:g}: {s})" for f, s in run.fraction_seeds.items())
            + f"; stage-1 factors {run.stage1_factors}; device {device}\n  {guess}")
    t0 = time.time()
    if not a.report_only:
        check_same_run(out, run.settings())
        stopped_at = run.execute(a.stop_after)
        if stopped_at is not None:
            return stopped_at
    report = write_report(run, None if a.report_only else time.time() - t0, guess)
    run.log(f"report: {report}")
    return report


def main(argv: Optional[Sequence[str]] = None) -> str:
    try:
        return run_evaluation(parse_args(argv))
    except (EvaluationError, SourceMissing) as e:
        raise SystemExit(f"evaluate: {e}") from None
