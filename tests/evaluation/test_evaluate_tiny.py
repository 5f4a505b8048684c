"""Smoke test: `python -m nnunet_anatomask.evaluate --size tiny` end to end through the real nnU-Net CLIs (plan,
nnUNetv2_pretrain per scheme, nnUNetv2_train per fraction for every scheme and for scratch, predict, evaluate),
then a rerun that skips every finished step. It checks that the table, CSVs and plot exist with finite numbers,
not which scheme wins (1 epoch x 2 iterations)."""
import csv
import json
import math
import os
import re
import subprocess
import sys

import pytest

from nnunet_anatomask.evaluation.protocol import SIZES
from nnunet_anatomask.evaluation.trainer_names import SCRATCH, scheme_trainers
from tests.conftest import clean_env


def evaluate(out, timeout=900):
    proc = subprocess.run([sys.executable, "-m", "nnunet_anatomask.evaluate", "--size", "tiny", "--output", str(out),
                           "--device", "cpu"], env=clean_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"evaluate exited {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc.stdout


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate_tiny")
    return out, evaluate(out)


def test_table_csv_plot(tiny):
    out, stdout = tiny
    report = out / "report"
    text = (report / "results.md").read_text()
    trainers = [SCRATCH, *scheme_trainers()]
    fractions = SIZES["tiny"].fractions
    for tr in trainers:
        row = next(line for line in text.splitlines() if line.startswith(f"| {tr[len('nnUNetTrainer'):]} |"))
        numbers = [float(x) for x in re.findall(r"[-+]?\d+\.\d+", row)]
        per_cell = 1 if tr == SCRATCH else 4  # mean, or mean + difference + interval
        assert len(numbers) == per_cell * len(fractions), row
        assert all(math.isfinite(x) for x in numbers), row
        if tr != SCRATCH:
            for k in range(len(fractions)):
                _, diff, lo, hi = numbers[4 * k: 4 * k + 4]
                assert lo <= diff <= hi
    assert "smoke run" in text
    with open(report / "per_class_dice.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(trainers) * len(fractions)  # one foreground class
    assert all(math.isfinite(float(r["mean_dice"])) for r in rows)
    assert (report / "dice_vs_fraction.png").stat().st_size > 1000
    results = json.loads((report / "results.json").read_text())
    assert results["labelled_cases"] == [2, 6] and set(results["trainers"]) == set(trainers)


def test_each_scheme_pretrained_once_and_kept_apart(tiny):
    out, _ = tiny
    base = out / "nnUNet_results" / "Dataset980_EvalTiny"
    plans = SIZES["tiny"].plans_name
    for tr in scheme_trainers():
        folder = base / f"{tr}__{plans}__2d"
        assert (folder / "fold_all" / "pretraining" / "checkpoint_final.pth").is_file()
        for k in range(len(SIZES["tiny"].fractions)):
            assert (folder / f"fold_{k}" / "checkpoint_final.pth").is_file()
            log = "".join(p.read_text() for p in (folder / f"fold_{k}").glob("training_log_*.txt"))
            assert "Using the stage-1 checkpoint" in log and "fold_all" in log
    assert not (base / f"{SCRATCH}__{plans}__2d" / "fold_all").exists()
    splits = json.loads((out / "nnUNet_preprocessed" / "Dataset980_EvalTiny" / "splits_final.json").read_text())
    test_cases = {f[:-7] for f in os.listdir(out / "nnUNet_raw" / "Dataset980_EvalTiny" / "labelsTs")}
    assert not test_cases & {c for s in splits for c in s["train"] + s["val"]}


def test_rerun_skips_finished_steps(tiny):
    out, _ = tiny
    stdout = evaluate(out, timeout=300)
    assert "[run ]" not in stdout and stdout.count("[skip]") >= 2 + 2 * len(SIZES["tiny"].fractions) * 3
