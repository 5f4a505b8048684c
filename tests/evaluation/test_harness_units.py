"""Fast unit tests of the evaluation harness pieces: fractions, splits, bootstrap, capped plans, nnU-Net's
evaluation on a folder, the report (table, CSV, plot) and the rerun guard. No training."""
import csv
import json
import math
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_anatomask.evaluation import harness
from nnunet_anatomask.evaluation.harness import (SCRATCH, SIZES, Run, check_same_run, evaluate_folder,
                                                 fraction_counts, make_splits, paired_bootstrap, scheme_trainers,
                                                 write_capped_plans, write_report)


def test_scheme_trainers_cover_every_scheme():
    from nnunet_anatomask.pretraining.schemes import SCHEMES
    assert scheme_trainers() == ["nnUNetTrainer" + s for s in SCHEMES]
    assert scheme_trainers(["RandomMask"]) == ["nnUNetTrainerRandomMask"]
    with pytest.raises(SystemExit, match="unknown scheme"):
        scheme_trainers(["NoSuchScheme"])


def test_fraction_counts():
    assert fraction_counts([0.1, 0.25, 1.0], 36) == [4, 9, 36]
    assert fraction_counts([0.1, 0.25, 1.0], 6) == [1, 2, 6]  # at least one case, round half up
    with pytest.raises(SystemExit):
        fraction_counts([0.0], 10)
    with pytest.raises(SystemExit):
        fraction_counts([1.5], 10)


def test_splits_nested_disjoint_from_validation():
    cases = [f"c{i:02d}" for i in range(40)]
    splits = make_splits(cases, 4, [4, 9, 36])
    assert [len(s["train"]) for s in splits] == [4, 9, 36]
    val = set(splits[0]["val"])
    assert len(val) == 4 and all(set(s["val"]) == val for s in splits)
    for small, big in zip(splits, splits[1:]):
        assert set(small["train"]) <= set(big["train"])
    assert not val & set(splits[-1]["train"]) and val | set(splits[-1]["train"]) == set(cases)
    assert make_splits(cases, 4, [4, 9, 36]) == splits  # seeded


def test_paired_bootstrap():
    a, b = np.linspace(0.5, 0.9, 20), np.linspace(0.5, 0.9, 20) - 0.1
    mean, lo, hi = paired_bootstrap(a, b)
    assert mean == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    rng = np.random.default_rng(1)
    d = rng.normal(0.05, 0.02, 30)
    mean, lo, hi = paired_bootstrap(d, np.zeros(30))
    assert lo < mean < hi and lo > 0 and hi - lo < 0.03
    assert paired_bootstrap(d, np.zeros(30)) == (mean, lo, hi)  # fixed seed


def test_capped_plans_share_the_preprocessed_data(tmp_path):
    src = {"plans_name": "nnUNetPlans", "configurations": {"2d": {
        "data_identifier": "nnUNetPlans_2d", "batch_size": 143,
        "architecture": {"arch_kwargs": {"features_per_stage": [32, 64, 128, 256, 512]}}}}}
    (tmp_path / "nnUNetPlans.json").write_text(json.dumps(src))
    plans = write_capped_plans(str(tmp_path / "nnUNetPlans.json"), str(tmp_path / "capped.json"), "2d",
                               "nnUNetPlansCappedF64B16", 64, 16)
    cfg = plans["configurations"]["2d"]
    assert plans["plans_name"] == "nnUNetPlansCappedF64B16"
    assert cfg["architecture"]["arch_kwargs"]["features_per_stage"] == [32, 64, 64, 64, 64]
    assert cfg["batch_size"] == 16 and cfg["data_identifier"] == "nnUNetPlans_2d"
    assert json.loads((tmp_path / "capped.json").read_text()) == plans
    assert SIZES["cpu"].plans_name == "nnUNetPlansCappedF64B16" and SIZES["gpu"].plans_name == "nnUNetPlans"


def _write(arr, path):
    sitk.WriteImage(sitk.GetImageFromArray(arr.astype(np.uint8)), str(path))


def test_evaluate_folder_is_nnunets_dice(tmp_path):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir(), pred.mkdir()
    r = np.zeros((4, 8, 8), np.uint8)
    r[:, :4] = 1
    p = r.copy()
    p[:, :2] = 0  # half of class 1 missed
    _write(r, ref / "a.nii.gz"), _write(p, pred / "a.nii.gz")
    _write(r, ref / "b.nii.gz"), _write(r, pred / "b.nii.gz")
    summary = evaluate_folder(str(ref), str(pred), {1: "structure", 2: "absent"})
    assert os.path.isfile(pred / "summary.json")
    cases, dice, classes = harness.case_dice(str(pred / "summary.json"))
    assert cases == ["a", "b"] and classes == [1, 2]
    assert dice[0, 0] == pytest.approx(2 * 64 / (2 * 64 + 64)) and dice[1, 0] == 1.0
    assert np.isnan(dice[:, 1]).all()  # absent from reference and prediction: nnU-Net's NaN
    assert summary["mean"][1]["Dice"] == pytest.approx(np.mean(dice[:, 0]))


def _fake_run(tmp_path, fractions=(0.5, 1.0)):
    size = SIZES["tiny"]
    run = Run(size, str(tmp_path), ["nnUNetTrainerRandomMask", "nnUNetTrainerAnatoMask"], list(fractions), "cpu",
              log=lambda m: None)
    os.makedirs(run.raw_dataset)
    with open(os.path.join(run.raw_dataset, "dataset.json"), "w") as f:
        json.dump({"labels": {"background": 0, "a": 1, "b": 2}}, f)
    rng = np.random.default_rng(0)
    for tr in run.all_trainers():
        for k in range(len(fractions)):
            folder = run.pred_dir(tr, k)
            if tr == "nnUNetTrainerAnatoMask" and k == 1:
                continue  # not run yet
            os.makedirs(folder)
            per_case = [{"reference_file": f"/x/case_{i}.nii.gz", "metrics": {
                "1": {"Dice": float(rng.uniform(0.5, 0.9))},
                "2": {"Dice": float(rng.uniform(0.2, 0.6)) if i else None}}} for i in range(5)]
            with open(os.path.join(folder, "summary.json"), "w") as f:
                json.dump({"metric_per_case": per_case}, f)
    return run


def test_report_table_csv_plot(tmp_path):
    run = _fake_run(tmp_path)
    path = write_report(run, [3, 6], 12.0)
    text = open(path).read()
    assert "| Scratch | " in text and "| RandomMask | " in text and "not run" in text
    row = next(line for line in text.splitlines() if line.startswith("| RandomMask"))
    nums = [float(x) for x in row.replace("[", " ").replace("]", " ").replace("(", " ").replace(")", " ")
            .replace(",", " ").replace("|", " ").split()[1:]]
    assert len(nums) == 8 and all(math.isfinite(x) for x in nums)
    assert nums[2] <= nums[1] <= nums[3]  # difference inside its interval
    with open(os.path.join(run.report_dir, "per_class_dice.csv")) as f:
        rows = list(csv.DictReader(f))
    assert {r["class"] for r in rows} == {"a", "b"}
    assert {r["trainer"] for r in rows} == {SCRATCH, "nnUNetTrainerRandomMask", "nnUNetTrainerAnatoMask"}
    assert next(r for r in rows if r["class"] == "b")["test_cases"] == "4"  # NaN case skipped
    assert os.path.getsize(os.path.join(run.report_dir, "dice_vs_fraction.png")) > 1000
    res = json.load(open(os.path.join(run.report_dir, "results.json")))
    assert res["bootstrap"] == {"resamples": 2000, "seed": 0, "level": 0.95}


def test_rerun_with_other_settings_is_refused(tmp_path):
    run = _fake_run(tmp_path)
    check_same_run(run)
    check_same_run(run)  # same settings: fine
    run.fractions = [0.1, 1.0]
    with pytest.raises(SystemExit, match="fractions"):
        check_same_run(run)
