"""nnU-Net's evaluation on a folder, and the per-case Dice matrix read back from its summary.json."""
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_anatomask.evaluation.errors import EvaluationError
from nnunet_anatomask.evaluation.metrics import case_dice, evaluate_folder


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
    cases, dice, classes = case_dice(str(pred / "summary.json"))
    assert cases == ["a", "b"] and classes == [1, 2]
    assert dice[0, 0] == pytest.approx(2 * 64 / (2 * 64 + 64)) and dice[1, 0] == 1.0
    assert np.isnan(dice[:, 1]).all()  # absent from reference and prediction: nnU-Net's NaN
    assert summary["mean"][1]["Dice"] == pytest.approx(np.mean(dice[:, 0]))


def test_missing_prediction_is_named(tmp_path):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir(), pred.mkdir()
    _write(np.ones((2, 2, 2)), ref / "a.nii.gz")
    with pytest.raises(EvaluationError, match=r"lacks predictions for \['a.nii.gz'\]"):
        evaluate_folder(str(ref), str(pred), {1: "x"})
