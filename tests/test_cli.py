"""nnUNetv2_pretrain's own messages for bad input (in-process; the happy path runs through the real console
script in tests/trainers/test_pretrain_handover.py)."""
import pytest
import torch

from nnunet_anatomask.cli import main as pretrain_entry
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


def test_list_prints_every_trainer_with_scheme_backbone_and_recipe(capsys):
    """nnUNetv2_pretrain --list (no other argument needed): one line per trainer nnU-Net can find, with the
    registry's scheme, backbone and stage-2 recipe. Catches: a trainer missing from the list, a wrong row."""
    import nnunet_anatomask.trainers.registry as registry
    from nnunet_anatomask.pretraining.schemes import SCHEMES

    with pytest.raises(SystemExit) as stop:
        pretrain_entry(["--list"])
    assert stop.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["trainer", "scheme", "backbone", "stage", "2"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(registry.__all__)
    assert len(rows) == len(SCHEMES) * len(registry.STAGE2) + 2 + len(registry.RECIPE_TRAINERS)
    for trainer, scheme, backbone, recipe in registry.listing():
        assert rows[trainer].split()[1] == scheme.split()[0] and backbone in rows[trainer], trainer
        assert rows[trainer].endswith(recipe), trainer


def test_docs_list_the_generated_trainer_names():
    """docs/usage.md shows `nnUNetv2_pretrain --list` as it prints today: every generated name as text."""
    import os
    from nnunet_anatomask.cli import trainer_table

    usage = open(os.path.join(os.path.dirname(__file__), "..", "docs", "usage.md")).read()
    block = usage.split("$ nnUNetv2_pretrain --list\n", 1)[1].split("```", 1)[0]
    assert block.strip() == trainer_table().strip(), "regenerate the block with `nnUNetv2_pretrain --list`"
