"""nnUNetv2_pretrain's own messages for bad input (in-process; the happy path runs through the real console
script in tests/trainers/test_pretrain_handover.py)."""
import pytest
import torch

from nnunet_anatomask.cli import pretrain_entry
from tests.conftest import clean_env, run_cli


def test_unknown_trainer_suggests_ours(monkeypatch, tmp_path):
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    with pytest.raises(SystemExit, match="Did you mean nnUNetTrainerAnatoMask.*Fix: use one of"):
        pretrain_entry(["990", "3d_fullres", "all", "-tr", "nnUNetTrainerAnatomask", "-device", "cpu"])


def test_trainer_without_stage1_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    with pytest.raises(SystemExit, match="'nnUNetTrainerScratch' is not a pretraining"):
        pretrain_entry(["990", "3d_fullres", "all", "-tr", "nnUNetTrainerScratch", "-device", "cpu"])


def test_missing_plans_names_the_fix(demo3d, monkeypatch):
    monkeypatch.setenv("nnUNet_preprocessed", demo3d.preprocessed)
    monkeypatch.setenv("nnUNet_results", demo3d.preprocessed)
    with pytest.raises(SystemExit, match="nnUNetResEncUNetLPlans.json not found. Fix: run nnUNetv2_plan_and_pre"):
        pretrain_entry(["990", "3d_fullres", "all", "-tr", "nnUNetTrainerRandomMask", "-p", "nnUNetResEncUNetLPlans",
                        "-device", "cpu"])


def test_more_gpus_than_visible_is_refused_before_any_work():
    """nnUNetv2_pretrain -num_gpus N with fewer visible GPUs: one message, before the trainer lookup."""
    visible = torch.cuda.device_count()
    too_many = max(2, visible + 1)
    with pytest.raises(SystemExit, match=rf"-num_gpus {too_many} asks for {too_many} GPUs, but this machine shows "
                                         rf"{visible}.*Fix: use .*CUDA_VISIBLE_DEVICES"):
        pretrain_entry(["990", "3d_fullres", "all", "-tr", "nnUNetTrainerRandomMask", "-num_gpus", str(too_many)])


def test_nnunetv2_train_with_more_gpus_than_visible_stops_at_start_up(tmp_path):
    """The real nnUNetv2_train: our start-up hook stops it with the message before nnU-Net spawns any rank
    (whose set_device would crash). Catches: the hook's check missing or not reached."""
    too_many = max(2, torch.cuda.device_count() + 1)
    proc = run_cli(["nnUNetv2_train", "990", "3d_fullres", "0", "-tr", "nnUNetTrainerRandomMask", "-num_gpus",
                    too_many], clean_env(nnUNet_raw=str(tmp_path), nnUNet_preprocessed=str(tmp_path),
                                         nnUNet_results=str(tmp_path)), timeout=300, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"nnUNetv2_train: -num_gpus {too_many} asks for {too_many} GPUs" in proc.stderr
    assert "Fix: use" in proc.stderr
