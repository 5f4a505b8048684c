"""OUT/report: the table (results.md, results.json), per-class and per-case CSVs and the figures, from the
finished predictions' summary.json files."""
from __future__ import annotations

import csv
import json
import os
import platform
import warnings
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Optional, Sequence

import numpy as np

from nnunet_anatomask.evaluation import plots, statistics
from nnunet_anatomask.evaluation.errors import EvaluationError
from nnunet_anatomask.evaluation.metrics import case_dice
from nnunet_anatomask.evaluation.pipeline import Run
from nnunet_anatomask.evaluation.trainer_names import SCRATCH, short_name


def collect(run: Run) -> dict:
    """{(trainer, k): (cases, dice[cases, classes], classes)} for every finished prediction."""
    out = {}
    for tr in run.all_trainers():
        for k in range(len(run.fractions)):
            path = run.layout.summary(tr, k)
            if os.path.isfile(path):
                out[(tr, k)] = case_dice(path)
    return out


def write_report(run: Run, wall_s: Optional[float]) -> str:
    """Write every report file; returns the path of results.md."""
    with warnings.catch_warnings():  # nanmean over classes absent from reference and prediction alike
        warnings.simplefilter("ignore", RuntimeWarning)
        return _write_report(run, run.counts(), wall_s)


def per_case_means(data: dict) -> dict:
    """{(trainer, k): (cases, per-case mean Dice over the foreground classes)}."""
    return {key: (cases, np.nanmean(dice, axis=1)) for key, (cases, dice, _) in data.items()}


def difference_table(rows: dict) -> dict:
    """{"trainer|k": mean Dice, test cases and, for schemes, the difference to Scratch with its interval}."""
    table = {}
    for (tr, k), (cases, per_case) in rows.items():
        entry = {"mean_dice": float(np.mean(per_case)), "test_cases": len(cases)}
        if tr != SCRATCH and (SCRATCH, k) in rows:
            s_cases, s_dice = rows[(SCRATCH, k)]
            if list(s_cases) != list(cases):
                raise EvaluationError(f"{tr} fold {k} and Scratch were evaluated on different test cases. Fix: "
                                      f"delete both prediction folders and rerun.")
            entry["diff"], entry["ci_low"], entry["ci_high"] = statistics.paired_interval(per_case, s_dice)
        table[f"{tr}|{k}"] = entry
    return table


def write_csvs(run: Run, data: dict, rows: dict, counts: Sequence[int]) -> None:
    fr, labels = run.fractions, run.labels()
    with open(os.path.join(run.layout.report, "per_class_dice.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["trainer", "fraction", "labelled_cases", "class_id", "class",
                                          "mean_dice", "test_cases"])
        w.writeheader()
        for (tr, k), (cases, dice, classes) in data.items():
            for j, c in enumerate(classes):
                w.writerow({"trainer": tr, "fraction": fr[k], "labelled_cases": counts[k], "class_id": c,
                            "class": labels.get(c, str(c)), "mean_dice": float(np.nanmean(dice[:, j])),
                            "test_cases": int(np.sum(~np.isnan(dice[:, j])))})
    with open(os.path.join(run.layout.report, "per_case_dice.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trainer", "fraction", "labelled_cases", "case", "mean_dice"])
        for (tr, k), (cases, per_case) in sorted(rows.items()):
            for c, d in zip(cases, per_case):
                w.writerow([tr, fr[k], counts[k], c, f"{d:.6f}"])


def _write_report(run: Run, counts: Sequence[int], wall_s: Optional[float]) -> str:
    report = run.layout.report
    os.makedirs(report, exist_ok=True)
    data = collect(run)
    rows = per_case_means(data)
    write_csvs(run, data, rows, counts)
    table = difference_table(rows)
    with open(os.path.join(report, "results.md"), "w") as f:
        f.write(render_markdown(run, counts, table, wall_s))
    with open(os.path.join(report, "results.json"), "w") as f:
        json.dump({"size": asdict(run.size), "plans_name": run.size.plans_name, "fractions": run.fractions,
                   "labelled_cases": list(counts), "device": run.device, "trainers": run.all_trainers(),
                   "table": table, "bootstrap": {"resamples": statistics.RESAMPLES, "seed": statistics.SEED,
                                                 "level": statistics.LEVEL}}, f, indent=2)
    plots.dice_vs_fraction(os.path.join(report, "dice_vs_fraction.png"), run.all_trainers(), run.fractions,
                           counts, table, f"Dice vs label fraction (--size {run.size.name})")
    return os.path.join(report, "results.md")


def table_lines(run: Run, counts: Sequence[int], table: dict) -> list[str]:
    fr = run.fractions
    lines = ["| trainer | " + " | ".join(f"{f * 100:g} % ({n} case{'s' if n != 1 else ''})"
                                         for f, n in zip(fr, counts)) + " |",
             "|---" * (len(fr) + 1) + "|"]
    for tr in run.all_trainers():
        cells = []
        for k in range(len(fr)):
            e = table.get(f"{tr}|{k}")
            if e is None:
                cells.append("not run")
            elif "diff" in e:
                cells.append(f"{e['mean_dice']:.3f} ({e['diff']:+.3f} [{e['ci_low']:+.3f}, {e['ci_high']:+.3f}])")
            else:
                cells.append(f"{e['mean_dice']:.3f}")
        lines.append(f"| {short_name(tr)} | " + " | ".join(cells) + " |")
    return lines


def _read_json(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def render_markdown(run: Run, counts: Sequence[int], table: dict, wall_s: Optional[float]) -> str:
    s = run.size
    leak = (_read_json(os.path.join(run.layout.raw_dataset, "provenance.json")) or {}).get("leak", "")
    timings = _read_json(os.path.join(run.out, "timings.json"))
    total = sum(timings.values()) if timings else None
    test_cases = next(iter(table.values()))["test_cases"] if table else 0
    return "\n".join([
        f"# Evaluation: --size {s.name}", "",
        f"{s.note}.", "",
        f"Mean Dice over the {test_cases} held-out test cases (per case: the mean over foreground classes; "
        f"nnU-Net's Dice, a class absent from both reference and prediction is skipped). In brackets: difference "
        f"to {short_name(SCRATCH)} on the same fraction, with the {statistics.LEVEL:.0%} paired bootstrap interval "
        f"over test cases ({statistics.RESAMPLES} resamples, seed {statistics.SEED}).", "",
        *table_lines(run, counts, table), "",
        f"- dataset: `{s.dataset}` ({s.num_train} training images, {s.num_val} of them the fixed validation set, "
        f"{s.num_test} test cases){'; ' + leak if leak else ''}",
        f"- configuration `{s.configuration}`, plans `{s.plans_name}`; stage 1: {s.pretrain_epochs} x "
        f"{s.iters_per_epoch} iterations on all training images; stage 2: {s.finetune_epochs} x "
        f"{s.iters_per_epoch} iterations",
        f"- device `{run.device}`, {platform.node()} ({os.cpu_count()} CPUs), "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"
        + (f"; wall time of this invocation {wall_s / 60:.1f} min" if wall_s is not None else "")
        + (f"; all steps over all invocations {total / 60:.1f} min" if total else ""),
        "- per-class Dice: `per_class_dice.csv`; per-case: `per_case_dice.csv`; plot: `dice_vs_fraction.png`", ""])
