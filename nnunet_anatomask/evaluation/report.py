"""OUT/report: results.md (tables, figures, costs), results.json, per-class and per-case CSVs, the learning
curves, Dice against the label fraction and each scheme's last stage-1 picture."""
from __future__ import annotations

import csv
import glob
import json
import math
import os
import platform
import shutil
import warnings
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Optional

import numpy as np

from nnunet_anatomask.evaluation import curves, plots, results, statistics
from nnunet_anatomask.evaluation.pipeline import Run
from nnunet_anatomask.evaluation.trainer_names import SCRATCH, short_name


def write_report(run: Run, wall_s: Optional[float], estimate_text: str = "") -> str:
    """Write every report file from the finished steps; returns the path of results.md."""
    os.makedirs(run.layout.report, exist_ok=True)
    _, wanted = run.fold_table()
    cells = results.collect(run, wanted)
    rows, lr_rows = results.table(run, cells), results.lr_table(run, cells)
    factor_rows = results.factor_table(run, cells)
    plateaus, costs = results.plateaus(run, wanted), results.costs(run)
    write_csvs(run, cells)
    figures = write_figures(run, wanted, rows)
    with open(os.path.join(run.layout.report, "results.json"), "w") as f:
        json.dump({"size": asdict(run.size), "plans_name": run.size.plans_name, "fractions": run.fractions,
                   "labelled_cases": run.counts(), "seeds": run.seeds, "device": run.device,
                   "trainers": run.all_trainers(), "recipes": run.recipes, "scratch_lrs": run.scratch_lrs,
                   "table": rows, "lr_comparison": lr_rows, "stage1_factors": factor_rows, "plateaus": plateaus,
                   "costs": costs, "bootstrap": {"resamples": statistics.RESAMPLES, "seed": statistics.SEED,
                                                 "level": statistics.LEVEL}}, f, indent=2)
    path = os.path.join(run.layout.report, "results.md")
    with open(path, "w") as f:
        f.write(render_markdown(run, rows, lr_rows, factor_rows, plateaus, costs, figures, wall_s,
                                estimate_text))
    return path


# --- files ----------------------------------------------------------------------------------------------------
def write_csvs(run: Run, cells: dict) -> None:
    labels, counts = run.labels(), dict(zip(run.fractions, run.counts()))
    with open(os.path.join(run.layout.report, "per_case_dice.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trainer", "fraction", "labelled_cases", "initial_lr", "seed", "case", "class_id", "class",
                    "dice"])
        for c in cells.values():
            for i, seed in enumerate(c.seeds):
                for j, case in enumerate(c.cases):
                    for k, cls in enumerate(c.classes):
                        w.writerow([c.trainer, c.fraction, counts.get(c.fraction), c.initial_lr or "default", seed,
                                    case, cls, labels.get(cls, str(cls)), f"{c.dice[i, j, k]:.6f}"])
    with open(os.path.join(run.layout.report, "per_class_dice.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trainer", "fraction", "labelled_cases", "initial_lr", "runs", "class_id", "class", "mean_dice"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for c in cells.values():
                for k, cls in enumerate(c.classes):
                    w.writerow([c.trainer, c.fraction, counts.get(c.fraction), c.initial_lr or "default",
                                len(c.seeds), cls, labels.get(cls, str(cls)), f"{np.nanmean(c.dice[:, :, k]):.6f}"])


def write_figures(run: Run, wanted, rows: list) -> dict:
    """{name: file name} of the figures written (learning curves, Dice vs fraction, stage-1 pictures)."""
    report, figures = run.layout.report, {}
    if rows:
        plots.dice_vs_fraction(os.path.join(report, "dice_vs_fraction.png"), rows, run.fractions, run.counts(),
                               f"Dice vs label fraction (--size {run.size.name})")
        figures["dice_vs_fraction"] = "dice_vs_fraction.png"
    panels = curve_panels(run, wanted)
    if panels:
        plots.learning_curves(os.path.join(report, "learning_curves.png"), panels,
                              f"Stage-2 learning curves (--size {run.size.name})")
        figures["learning_curves"] = "learning_curves.png"
    for tr in run.scheme_arms():
        pictures = sorted(glob.glob(os.path.join(run.layout.stage1_dir(tr), "reconstruction_epoch_*.png")))
        if pictures:
            shutil.copyfile(pictures[-1], os.path.join(report, f"stage1_{short_name(tr)}.png"))
            figures[f"stage1 {short_name(tr)}"] = f"stage1_{short_name(tr)}.png"
    return figures


def curve_panels(run: Run, wanted) -> dict:
    counts = dict(zip(run.fractions, run.counts()))
    panels: dict = {}
    for r in wanted:
        lr = f", start lr {r.initial_lr:g}" if r.initial_lr is not None else ""
        name = f"{r.fraction * 100:g} % ({counts[r.fraction]} labelled){lr}"
        for tr in run.trainers_for(r):
            path = run.curve_file(tr, r.fold)
            if os.path.isfile(path):
                panels.setdefault(name, {}).setdefault(tr, []).append(curves.load_curve(path))
    return panels


# --- markdown ---------------------------------------------------------------------------------------------------
def _lr(value) -> str:
    return "default" if value is None else f"{value:g}"


def cell_text(row: dict) -> str:
    text = f"{row['mean_dice']:.3f}"
    if "diff" in row:
        text += f" ({row['diff']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}], {row['verdict']})"
    return text + f", {row['runs']} run{'s' if row['runs'] != 1 else ''}"


def main_table(run: Run, rows: list) -> list[str]:
    counts = dict(zip(run.fractions, run.counts()))
    lines = ["| trainer | " + " | ".join(f"{f * 100:g} % ({counts[f]} labelled)" for f in run.fractions) + " |",
             "|---" * (len(run.fractions) + 1) + "|"]
    for tr in run.all_trainers():
        by_fraction = {r["fraction"]: r for r in rows if r["trainer"] == tr}
        lines.append(f"| {short_name(tr)} | " + " | ".join(
            cell_text(by_fraction[f]) if f in by_fraction else "not run" for f in run.fractions) + " |")
    return lines


def components_table(rows: list) -> list[str]:
    lines = ["| scheme | fraction | difference | runs x cases | seeds only | test cases only | smallest detectable |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "diff" in r:
            seed = f"[{r['seed_low']:+.3f}, {r['seed_high']:+.3f}]" if r["seed_low"] is not None else "one run"
            case = f"[{r['case_low']:+.3f}, {r['case_high']:+.3f}]" if r["case_low"] is not None else "one case"
            lines.append(f"| {short_name(r['trainer'])} | {r['fraction'] * 100:g} % | {r['diff']:+.3f} | "
                         f"[{r['low']:+.3f}, {r['high']:+.3f}] | {seed} | {case} | ±{r['detectable']:.3f} "
                         f"({r['runs']} runs) |")
    return lines


def lr_lines(run: Run, lr_rows: list) -> list[str]:
    if not lr_rows:
        return []
    f = min(run.fractions)
    others = ", ".join(f"{lr:g}" for lr in ([run.lr_study] if run.lr_study is not None else []))
    scratch = ", ".join(f"{lr:g}" for lr in run.scratch_lrs if lr != run.lr_study)
    lines = [f"## Against Scratch at its own best start lr, at {f * 100:g} % of the labels", "",
             "Each trainer at its recipe's start lr (default)" + (f" and at {others}" if others else "")
             + (f"; Scratch also at {scratch}" if scratch else "") + "; the difference is to Scratch at its best "
             f"start lr ({_lr(lr_rows[0].get('vs_initial_lr'))}).", "",
             "| trainer | start lr | mean Dice (runs) | vs Scratch at its best |", "|---|---|---|---|"]
    for r in lr_rows:
        vs = f"{r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}], {r['verdict']}" if "diff" in r else "-"
        lines.append(f"| {short_name(r['trainer'])} | {_lr(r['initial_lr'])} | {r['mean_dice']:.3f} ({r['runs']}) "
                     f"| {vs} |")
    return lines + [""]


def factor_lines(factor_rows: list) -> list[str]:
    if not factor_rows:
        return []
    lines = ["## A longer stage 1 against the size's own (x1)", "",
             "Each scheme pretrained f times as long against the same scheme at x1, paired by seed on the same test "
             "cases (the interval and verdict as above).", "",
             "| trainer | fraction | mean Dice (runs) | vs x1 | smallest detectable |", "|---|---|---|---|---|"]
    for r in factor_rows:
        lines.append(f"| {short_name(r['trainer'])} | {r['fraction'] * 100:g} % ({r['labelled_cases']} labelled) | "
                     f"{r['mean_dice']:.3f} ({r['runs']}) | {r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}], "
                     f"{r['verdict']} | ±{r['detectable']:.3f} |")
    return lines + [""]


def plateau_lines(plateaus: list) -> list[str]:
    lines = ["| trainer | fraction | start lr | runs | pseudo-Dice plateau | rise over the last stretch |",
             "|---|---|---|---|---|---|"]
    for p in sorted(plateaus, key=lambda p: (p["fraction"], p["initial_lr"] or 0, p["trainer"] != SCRATCH)):
        rise = "-" if math.isnan(p["rise"]) else f"{p['rise']:+.3f}"
        lines.append(f"| {short_name(p['trainer'])} | {p['fraction'] * 100:g} % | {_lr(p['initial_lr'])} | "
                     f"{p['runs']} | {p['plateau']:.3f} | {rise} |")
    return lines


def cost_lines(costs: dict, jobs: int) -> list[str]:
    """Measured costs, wall time (this machine, its load) and CPU time (close to the wall time of one job on an
    otherwise idle core)."""
    if not costs:
        return []
    w, c = costs["wall_s"], costs["cpu_s"]
    m = lambda s: f"{s / 60:.1f} min" if s is not None else "-"  # noqa: E731
    both = lambda key: f"{m(w[key])} wall, {m(c[key])} CPU"  # noqa: E731
    lines = [f"- steps over all invocations: {m(w['total'])} wall summed over steps ({jobs} side by side), "
             f"{m(c['total'])} CPU; data + plan {both('data_and_plan')}",
             "- stage 1: " + (", ".join(f"{short_name(k)} {m(v)} wall, {m(c['stage1'][k])} CPU"
                                        for k, v in w["stage1"].items()) or "-"),
             f"- stage 2: {w['stage2_runs']} runs, each on average {both('stage2_run')}; prediction + evaluation "
             f"{both('predict')} per run"]
    if "per_scheme" in c:
        lines.append("- one scheme (its stage 1 + its stage-2 runs and predictions), CPU: "
                     + ", ".join(f"{short_name(k)} {m(v)}" for k, v in c["per_scheme"].items()))
    return lines


def pool_text(run: Run) -> str:
    """What stage 1 ran on: the training images, or the pool and its sources."""
    s = run.size
    if s.pool_id is None:
        return "all training images"
    path = os.path.join(run.layout.raw, f"pool_{s.pool_id}_provenance.json")
    sources = json.load(open(path))["sources"] if os.path.isfile(path) else {}
    return (f"the unlabelled pool `{s.pool_dataset}` ({s.pool_cases} cases: "
            + ", ".join(f"{k} {v['cases']}" for k, v in sources.items())
            + "; planned by nnUNetv2_plan_and_preprocess_unlabelled --as, its plans moved to the labelled dataset, "
              "schemes fine-tuned by nnUNetTrainerFinetune -pretrained_weights)")


def seeds_text(run: Run) -> str:
    """'seeds 0, 1, 2', or per fraction where they differ ('seeds by fraction: 5 %: 0, 1, 2, 3, 4; 100 %: 0')."""
    per_fraction = {f: ", ".join(map(str, run.seeds_at(f))) for f in run.fractions}
    if len(set(per_fraction.values())) == 1:
        return f"seeds {next(iter(per_fraction.values()))}"
    return "seeds by fraction: " + "; ".join(f"{f * 100:g} %: {s}" for f, s in per_fraction.items())


def arms_note(run: Run) -> str:
    if run.stage1_factors == [1]:
        return ""
    return (" A scheme named `<scheme>_x<f>` was pretrained f times as long as the size's stage 1 ("
            + ", ".join(f"x{f:g}: {round(run.size.pretrain_epochs * f)} x {run.size.iters_per_epoch} iterations"
                        for f in run.stage1_factors) + "); its difference is to Scratch, as every row's.")


def render_markdown(run: Run, rows, lr_rows, factor_rows, plateaus, costs, figures, wall_s, estimate_text) -> str:
    s = run.size
    prov_path = os.path.join(run.layout.raw_dataset, "provenance.json")
    leak = json.load(open(prov_path)).get("leak", "") if os.path.isfile(prov_path) else ""
    test_cases = rows[0]["test_cases"] if rows else 0
    pictures = [f"![{k}]({v})" for k, v in figures.items() if k.startswith("stage1 ")]
    return "\n".join([
        f"# Evaluation: --size {s.name}", "", f"{s.note}.", "",
        f"Mean Dice over the {test_cases} held-out test cases and over the runs ({seeds_text(run)}"
        f"; per case the mean over the foreground classes, nnU-Net's Dice). In brackets: the difference to "
        f"{short_name(SCRATCH)} on the same fraction, its {statistics.LEVEL:.0%} interval resampling runs (paired by "
        f"seed) and test cases together (two-way bootstrap, {statistics.RESAMPLES} resamples), and the verdict: "
        f"better / worse where the interval excludes 0, 'not shown' where it does not."
        + arms_note(run), "",
        *main_table(run, rows), "",
        "The interval's two parts, each resampling one axis only (scipy.stats.bootstrap, paired), and the smallest "
        f"difference each comparison could have detected: (z_{{{1 - (1 - statistics.LEVEL) / 2:.3g}}} + "
        f"z_{{{statistics.POWER:.2g}}}) x se = {statistics.minimum_detectable(1.0):.2f} se, se the standard "
        f"deviation of the two-way bootstrap means (the measured variance of runs and cases): a true difference "
        f"that large is shown with {statistics.POWER:.0%} probability (Bloom 1995; docs/results.md).", "",
        *components_table(rows), "",
        "## Learning curves", "",
        *([f"![learning curves]({figures['learning_curves']})", ""] if "learning_curves" in figures else []),
        f"Plateau: the mean of nnU-Net's per-epoch validation pseudo-Dice over the last {curves.TAIL:.0%} of the "
        f"epochs, averaged over runs; rise: that mean minus the mean over the {curves.TAIL:.0%} before.", "",
        *plateau_lines(plateaus), "",
        *([f"![Dice against label fraction]({figures['dice_vs_fraction']})", ""]
          if "dice_vs_fraction" in figures else []),
        *lr_lines(run, lr_rows),
        *factor_lines(factor_rows),
        *(["## What each scheme masks, late in stage 1", "", *pictures, ""] if pictures else []),
        "## Run", "",
        f"- dataset: `{s.dataset}` ({s.num_train} training images, {s.num_val} of them the fixed validation set, "
        f"{s.num_test} test cases){'; ' + leak if leak else ''}",
        f"- configuration `{s.configuration}`, plans `{s.plans_name}`; stage 1: {s.pretrain_epochs} x "
        f"{s.iters_per_epoch} iterations on {pool_text(run)} (seed 0); stage 2: {s.finetune_epochs} x "
        f"{s.iters_per_epoch} iterations per run; torch threads per run: {s.threads or 'default'}",
        f"- device `{run.device}`, {platform.node()} ({os.cpu_count()} CPUs), "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"
        + (f"; wall time of this invocation {wall_s / 60:.1f} min" if wall_s is not None else ""),
        *([f"- before it started: {estimate_text}"] if estimate_text else []),
        *cost_lines(costs, run.jobs),
        "- files: `results.json`, `per_case_dice.csv` (every run, case and class), `per_class_dice.csv`", ""])
