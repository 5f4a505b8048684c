"""nnUNetv2_pretrain's own messages for bad input (in-process; the happy path runs through the real console
script in tests/trainers/test_pretrain_handover.py)."""
import pytest

from nnunet_anatomask.cli import pretrain_entry


def test_unknown_trainer_suggests_ours():
    with pytest.raises(SystemExit, match="Did you mean nnUNetTrainerAnatoMask.*Fix: use one of"):
        pretrain_entry(["990", "3d_fullres", "all", "-tr", "nnUNetTrainerAnatomask", "-device", "cpu"])


def test_trainer_without_stage1_is_refused():
    with pytest.raises(SystemExit, match="'nnUNetTrainerScratch' is not a pretraining"):
        pretrain_entry(["990", "3d_fullres", "all", "-tr", "nnUNetTrainerScratch", "-device", "cpu"])


def test_missing_plans_names_the_fix(demo3d, monkeypatch):
    monkeypatch.setenv("nnUNet_preprocessed", demo3d.preprocessed)
    monkeypatch.setenv("nnUNet_results", demo3d.preprocessed)
    with pytest.raises(SystemExit, match="nnUNetResEncUNetLPlans.json not found. Fix: run nnUNetv2_plan_and_pre"):
        pretrain_entry(["990", "3d_fullres", "all", "-tr", "nnUNetTrainerRandomMask", "-p", "nnUNetResEncUNetLPlans",
                        "-device", "cpu"])
