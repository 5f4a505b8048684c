"""The report from finished predictions and curves (written here by hand): tables with seeds and intervals, a
'not run' cell, the lr comparison against Scratch at its best, CSVs, figures, results.json."""
import csv
import json
import math
import os

import numpy as np
import pytest

from nnunet_anatomask.evaluation.folds import save_folds
from nnunet_anatomask.evaluation.pipeline import Run
from nnunet_anatomask.evaluation.protocol import SIZES
from nnunet_anatomask.evaluation.report import seeds_text, write_report
from nnunet_anatomask.evaluation.trainer_names import SCRATCH

SCHEMES = ["nnUNetTrainerRandomMask", "nnUNetTrainerAnatoMask"]


def write_summary(path, rng, shift):
    per_case = [{"reference_file": f"/x/case_{i}.nii.gz", "metrics": {
        "1": {"Dice": float(rng.uniform(0.6, 0.7) + shift)},
        "2": {"Dice": float(rng.uniform(0.3, 0.4)) if i else None}}} for i in range(6)]
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        json.dump({"metric_per_case": per_case}, f)


def write_curve(path, level):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    dice = list(level * (1 - np.exp(-np.arange(10) / 2)))
    with open(path, "w") as f:
        json.dump({"iterations_per_epoch": 5, "epoch_seconds": [1.0] * 10, "mean_fg_dice": dice,
                   "ema_fg_dice": dice, "train_losses": [0] * 10, "val_losses": [0] * 10, "lrs": [0] * 10}, f)


@pytest.fixture
def run(tmp_path):
    """Two fractions x two seeds and the lr comparison; AnatoMask never ran at 100 %; at the smallest fraction
    Scratch is better with the compared lr, RandomMask better than Scratch by 0.2 at the default lr."""
    run = Run(SIZES["tiny"], str(tmp_path), SCHEMES, [0.5, 1.0], [0, 1], "cpu", lr_study=1e-3, log=lambda m: None)
    os.makedirs(run.layout.raw_dataset)
    with open(os.path.join(run.layout.raw_dataset, "dataset.json"), "w") as f:
        json.dump({"labels": {"background": 0, "a": 1, "b": 2}}, f)
    table, wanted = run.fold_table()
    save_folds(run.folds_file, table)
    rng = np.random.default_rng(0)
    for r in wanted:
        for tr in run.all_trainers():
            if tr == SCHEMES[1] and r.fraction == 1.0:
                continue
            shift = 0.2 if tr == SCHEMES[0] and r.initial_lr is None else 0.0
            shift += 0.1 if tr == SCRATCH and r.initial_lr is not None else 0.0
            write_summary(run.layout.summary(tr, r.fold), rng, shift)
            write_curve(run.curve_file(tr, r.fold), 0.6 + shift)
    with open(os.path.join(run.out, "timings.json"), "w") as f:
        json.dump({"data": {"wall_s": 1, "cpu_s": 1}, "stage1 nnUNetTrainerRandomMask": {"wall_s": 60, "cpu_s": 50},
                   "stage2 x": {"wall_s": 30, "cpu_s": 20}, "predict x": {"wall_s": 6, "cpu_s": 4}}, f)
    return run


def numbers(row):
    for ch in "[](),|":
        row = row.replace(ch, " ")
    return [float(x) for x in row.split() if x.lstrip("+-").replace(".", "").isdigit()]


def test_table_with_seeds_intervals_and_verdicts(run):
    text = open(write_report(run, 12.0, "estimated wall time 1 h")).read()
    lines = text.splitlines()
    rm = next(line for line in lines if line.startswith("| RandomMask |"))
    nums = numbers(rm)
    assert len(nums) == 2 * 5 and all(math.isfinite(x) for x in nums)  # mean, diff, low, high, runs; 2 fractions
    mean, diff, lo, hi, runs = nums[:5]
    assert lo <= diff <= hi and runs == 2 and "better" in rm.split("|")[2]
    assert "not run" in next(line for line in lines if line.startswith("| AnatoMask |"))
    assert "seeds 0, 1" in text and "estimated wall time 1 h" in text
    assert "| RandomMask | 50 % |" in text  # the components table


def test_lr_comparison_against_scratch_at_its_best(run):
    write_report(run, None)
    res = json.load(open(os.path.join(run.layout.report, "results.json")))
    lr_rows = res["lr_comparison"]
    assert {(r["trainer"], r["initial_lr"]) for r in lr_rows} == {(t, lr) for t in run.all_trainers()
                                                                  for lr in (None, 1e-3)}
    assert all(r["vs"] == SCRATCH and r["vs_initial_lr"] == 1e-3 for r in lr_rows if "vs" in r)
    text = open(os.path.join(run.layout.report, "results.md")).read()
    assert "Against Scratch at its own best start lr, at 50 % of the labels" in text


def test_recipes_and_scratch_at_its_best_start_lr(tmp_path):
    """A recipe axis (full, nnssl) and Scratch at two more start lrs: the recipe trainers join the main table as
    their own rows, Scratch's extra folds are Scratch's alone, and every trainer is compared with Scratch at its best
    start lr (here 3e-3, where Scratch scores highest)."""
    run = Run(SIZES["tiny"], str(tmp_path), SCHEMES[:1], [0.5], [0, 1], "cpu", log=lambda m: None,
              recipes=["full", "nnssl"], scratch_lrs=[1e-3, 3e-3])
    os.makedirs(run.layout.raw_dataset)
    with open(os.path.join(run.layout.raw_dataset, "dataset.json"), "w") as f:
        json.dump({"labels": {"background": 0, "a": 1, "b": 2}}, f)
    table, wanted = run.fold_table()
    save_folds(run.folds_file, table)
    assert [run.trainers_for(r) for r in wanted] == [[SCRATCH, SCHEMES[0], SCHEMES[0] + "_nnssl"]] * 2 + [[SCRATCH]] * 4
    rng = np.random.default_rng(0)
    for r in wanted:
        for tr in run.trainers_for(r):
            write_summary(run.layout.summary(tr, r.fold), rng, 0.2 if r.initial_lr == 3e-3 else 0.0)
            write_curve(run.curve_file(tr, r.fold), 0.6)
    text = open(write_report(run, None)).read()
    assert any(line.startswith("| RandomMask_nnssl |") for line in text.splitlines())
    res = json.load(open(os.path.join(run.layout.report, "results.json")))
    assert res["recipes"] == ["full", "nnssl"] and res["scratch_lrs"] == [1e-3, 3e-3]
    rows = {(r["trainer"], r["initial_lr"]): r for r in res["lr_comparison"]}
    assert set(rows) == {(SCRATCH, None), (SCRATCH, 1e-3), (SCRATCH, 3e-3), (SCHEMES[0], None),
                         (SCHEMES[0] + "_nnssl", None)}
    assert rows[(SCHEMES[0] + "_nnssl", None)]["vs_initial_lr"] == 3e-3 and "vs" not in rows[(SCRATCH, 3e-3)]
    assert "Scratch also at 0.001, 0.003" in text and "best start lr (0.003)" in text


def test_files_plateaus_costs(run):
    write_report(run, None)
    report = run.layout.report
    with open(os.path.join(report, "per_class_dice.csv")) as f:
        rows = list(csv.DictReader(f))
    assert {r["class"] for r in rows} == {"a", "b"} and {r["runs"] for r in rows} == {"2"}
    with open(os.path.join(report, "per_case_dice.csv")) as f:
        cases = list(csv.DictReader(f))
    assert len(cases) == (3 * 2 * 2 - 2 + 3 * 2) * 6 * 2  # (cells x seeds) x cases x classes
    for name in ("learning_curves.png", "dice_vs_fraction.png"):
        assert os.path.getsize(os.path.join(report, name)) > 1000
    res = json.load(open(os.path.join(report, "results.json")))
    rm = next(p for p in res["plateaus"] if p["trainer"] == SCHEMES[0] and p["initial_lr"] is None)
    assert rm["plateau"] == pytest.approx(0.8 * (1 - np.exp(-np.array([8, 9]) / 2)).mean())
    assert res["costs"]["cpu_s"]["per_scheme"]["nnUNetTrainerRandomMask"] == pytest.approx(50 + 4 * (20 + 4))


def test_header_names_the_seeds_each_fraction_ran(tmp_path):
    """The header names the seeds that ran: per fraction where --fraction-seeds changed some, and the changed ones
    alone where every fraction was changed (not the default seeds that never ran)."""
    make = lambda fractions, fraction_seeds: Run(SIZES["tiny"], str(tmp_path), SCHEMES, fractions, [0, 1, 2],  # noqa
                                                 "cpu", fraction_seeds=fraction_seeds)
    assert seeds_text(make([0.5, 1.0], {})) == "seeds 0, 1, 2"
    assert seeds_text(make([0.5], {0.5: [0, 1, 2, 3, 4]})) == "seeds 0, 1, 2, 3, 4"
    assert seeds_text(make([0.5, 1.0], {0.5: [0, 1, 2, 3]})) == "seeds by fraction: 50 %: 0, 1, 2, 3; 100 %: 0, 1, 2"


def test_a_longer_stage1_is_compared_with_the_same_scheme_at_x1(tmp_path):
    """RandomMask scores 0.1 above RandomMask_x10 and Scratch on class 1 in every run and case (class 2 the same
    draws): per case -0.1 where class 2 is absent (case 0), else -0.05 (the two-class mean), so RandomMask_x10's row
    in the factor section says (-0.1 + 5 x -0.05) / 6 = -0.058 within [-0.075, -0.050], worse; the main table
    compares it with Scratch (identical: +0.000, not shown)."""
    run = Run(SIZES["tiny"], str(tmp_path), SCHEMES[:1], [0.5], [0, 1, 2], "cpu", stage1_factors=[1, 10],
              log=lambda m: None)
    os.makedirs(run.layout.raw_dataset)
    with open(os.path.join(run.layout.raw_dataset, "dataset.json"), "w") as f:
        json.dump({"labels": {"background": 0, "a": 1, "b": 2}}, f)
    table, wanted = run.fold_table()
    save_folds(run.folds_file, table)
    for r in wanted:
        for tr in run.all_trainers():
            shift = 0.1 if tr == SCHEMES[0] else 0.0
            write_summary(run.layout.summary(tr, r.fold), np.random.default_rng(r.seed), shift)
    text = open(write_report(run, None)).read()
    section = text[text.index("## A longer stage 1 against the size's own (x1)"):]
    row = next(line for line in section.splitlines() if line.startswith("| RandomMask_x10 |"))
    assert "| 50 % (" in row and "-0.058 [-0.075, -0.050], worse" in row and "(3) |" in row
    main = next(line for line in text.splitlines() if line.startswith("| RandomMask_x10 |"))
    assert "+0.000 [+0.000, +0.000], not shown" in main
    assert "## A longer stage 1" not in open(write_report(Run(SIZES["tiny"], str(tmp_path), SCHEMES[:1], [0.5],
                                                              [0, 1, 2], "cpu", log=lambda m: None), None)).read()
