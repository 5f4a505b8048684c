"""The report from finished predictions: table with intervals, 'not run' cells, CSVs, plot, results.json."""
import csv
import json
import math
import os

import numpy as np

from nnunet_anatomask.evaluation.pipeline import Run
from nnunet_anatomask.evaluation.protocol import SIZES
from nnunet_anatomask.evaluation.report import write_report
from nnunet_anatomask.evaluation.trainer_names import SCRATCH


def fake_run(tmp_path, fractions=(0.5, 1.0)):
    """A tiny run whose predictions are summary.json files with random Dice; AnatoMask's fold 1 is missing."""
    run = Run(SIZES["tiny"], str(tmp_path), ["nnUNetTrainerRandomMask", "nnUNetTrainerAnatoMask"], list(fractions),
              "cpu", log=lambda m: None)
    os.makedirs(run.layout.raw_dataset)
    with open(os.path.join(run.layout.raw_dataset, "dataset.json"), "w") as f:
        json.dump({"labels": {"background": 0, "a": 1, "b": 2}}, f)
    rng = np.random.default_rng(0)
    for tr in run.all_trainers():
        for k in range(len(fractions)):
            if tr == "nnUNetTrainerAnatoMask" and k == 1:
                continue  # not run yet
            os.makedirs(run.layout.pred_dir(tr, k))
            per_case = [{"reference_file": f"/x/case_{i}.nii.gz", "metrics": {
                "1": {"Dice": float(rng.uniform(0.5, 0.9))},
                "2": {"Dice": float(rng.uniform(0.2, 0.6)) if i else None}}} for i in range(5)]
            with open(run.layout.summary(tr, k), "w") as f:
                json.dump({"metric_per_case": per_case}, f)
    return run


def numbers(row):
    for ch in "[](),|":
        row = row.replace(ch, " ")
    return [float(x) for x in row.split()[1:]]


def test_report_table_csv_plot(tmp_path):
    run = fake_run(tmp_path)
    text = open(write_report(run, 12.0)).read()
    assert "| Scratch | " in text and "| RandomMask | " in text and "not run" in text
    nums = numbers(next(line for line in text.splitlines() if line.startswith("| RandomMask")))
    assert len(nums) == 8 and all(math.isfinite(x) for x in nums)
    assert nums[2] <= nums[1] <= nums[3]  # difference inside its interval
    with open(os.path.join(run.layout.report, "per_class_dice.csv")) as f:
        rows = list(csv.DictReader(f))
    assert {r["class"] for r in rows} == {"a", "b"}
    assert {r["trainer"] for r in rows} == {SCRATCH, "nnUNetTrainerRandomMask", "nnUNetTrainerAnatoMask"}
    assert next(r for r in rows if r["class"] == "b")["test_cases"] == "4"  # NaN case skipped
    assert os.path.getsize(os.path.join(run.layout.report, "dice_vs_fraction.png")) > 1000
    res = json.load(open(os.path.join(run.layout.report, "results.json")))
    assert res["bootstrap"] == {"resamples": 2000, "seed": 0, "level": 0.95}
