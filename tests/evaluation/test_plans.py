"""Capped plans share the planned file's preprocessed data."""
import json

from nnunet_anatomask.evaluation.plans import capped_plans_name, write_capped_plans
from nnunet_anatomask.evaluation.protocol import SIZES


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


def test_plans_names():
    assert capped_plans_name(None, None) == "nnUNetPlans"
    assert capped_plans_name(64, 16) == "nnUNetPlansCappedF64B16" and capped_plans_name(None, 8) == \
        "nnUNetPlansCappedB8"
    assert SIZES["gpu"].plans_name == "nnUNetPlans"
