"""Interruption (SIGKILL during checkpoint writes in both stages), non-finite losses, refused set-ups."""
import os

import pytest
import torch
import torch.distributed as dist

from nnunet_anatomask import checkpoint_io
from nnunet_anatomask.checkpoint_io import CheckpointError
from nnunet_anatomask.pretraining.schemes.random_mask import RandomMaskScheme
from nnunet_anatomask.trainers import nnUNetTrainerAnatoMask, nnUNetTrainerRandomMask
from nnunet_anatomask.trainers.stage1 import NonFiniteLossError
from nnunet_anatomask.trainers.stage2 import ConfigurationError
from tests.conftest import run_cli
from tests.trainers.helpers import fold_folder, load_weights_only, make_trainer, stage1_log_text, stage2_log_text

TR = "nnUNetTrainerRandomMask"


def test_kill_during_checkpoint_writes_then_continue(demo3d, tmp_path):
    """Run A dies in the 2nd stage-1 checkpoint write; run B (--c) resumes stage 1, finishes it and dies in the
    2nd stage-2 write (checkpoint_best after checkpoint_latest); run C (--c) resumes stage 2 and finishes."""
    results = tmp_path / "results"
    knobs = dict(nnUNet_anatomask_pretrain_epochs="3", nnUNet_anatomask_finetune_epochs="3")
    cmd = ["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", TR, "-device", "cpu"]
    fold = fold_folder(results, demo3d.dataset_name, TR, "3d_fullres", 0)
    pre = os.path.join(fold, "pretraining")

    a = run_cli(cmd, demo3d.train_env(results, **knobs, **{checkpoint_io.KILL_AT_WRITE: "2"}), check=False)
    assert a.returncode == -9, a.stderr[-3000:]
    assert load_weights_only(os.path.join(pre, "checkpoint_latest.pth"))["current_epoch"] == 1  # the 1st write
    assert [f for f in os.listdir(pre) if ".tmp" in f]  # the cut write never replaced it

    b = run_cli(cmd + ["--c"], demo3d.train_env(results, **knobs, **{checkpoint_io.KILL_AT_WRITE: "4"}),
                check=False)
    assert b.returncode == -9, b.stderr[-3000:]
    assert "at epoch 1" in stage1_log_text(fold)
    assert os.path.isfile(os.path.join(pre, "checkpoint_final.pth"))
    assert torch.load(os.path.join(fold, "checkpoint_latest.pth"), weights_only=False)["current_epoch"] == 1

    run_cli(cmd + ["--c"], demo3d.train_env(results, **knobs))
    assert "Stage 2 resumed at epoch 1: stage-1 weights are not loaded again" in stage2_log_text(fold)
    assert os.path.isfile(os.path.join(fold, "checkpoint_final.pth"))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(demo3d, monkeypatch, tmp_path):
    for name, value in {"nnUNet_anatomask_pretrain_epochs": "3", "nnUNet_anatomask_iters_per_epoch": "2",
                        "nnUNet_anatomask_save_every": "1", "nnUNet_n_proc_DA": "0"}.items():
        monkeypatch.setenv(name, value)
    original = RandomMaskScheme.loss

    def nan_in_epoch_1(self, images, prediction, cell_mask, epoch):
        loss, figures = original(self, images, prediction, cell_mask, epoch)
        return (loss * float("nan") if epoch == 1 else loss), figures

    monkeypatch.setattr(RandomMaskScheme, "loss", nan_in_epoch_1)
    trainer = make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path)
    with pytest.raises(NonFiniteLossError, match="non-finite loss in 2 of 2 steps of epoch 1"):
        trainer.run_pretraining()
    kept = load_weights_only(trainer.stage1.latest_checkpoint)
    assert kept["current_epoch"] == 1
    assert all(torch.isfinite(v).all() for v in kept["network_weights"].values() if v.is_floating_point())


def test_resume_with_another_schemes_checkpoint_is_refused(demo3d, monkeypatch, tmp_path):
    monkeypatch.setenv("nnUNet_anatomask_pretrain_epochs", "3")
    random_trainer = make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path)
    random_trainer.initialize()
    random_trainer.stage1.build()
    path = str(tmp_path / "random_latest.pth")
    random_trainer.stage1.save(path)
    anato = make_trainer(demo3d, nnUNetTrainerAnatoMask, monkeypatch, tmp_path, continue_training=True)
    anato.initialize()
    anato.stage1.build()
    with pytest.raises(CheckpointError, match="scheme = 'RandomMask', but this run has scheme = 'AnatoMask'"):
        anato.stage1.load(path)


def test_cascade_is_refused(demo3d, monkeypatch, tmp_path):
    plans = demo3d.plans()
    plans["configurations"]["3d_lowres"] = {"inherits_from": "3d_fullres", "next_stage": "3d_cascade_fullres"}
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    with pytest.raises(ConfigurationError, match="cascade"):
        make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path, config="3d_cascade_fullres",
                     plans=plans)


def test_ddp_trainer_keeps_the_cpu_device(demo3d, monkeypatch, tmp_path):
    """Under a process group nnU-Net puts a trainer on cuda:<rank>; ours stays on a requested CPU (gloo: our DDP
    tests, nnUNetv2_pretrain -device cpu -num_gpus N), and multi-GPU is no longer refused."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        trainer = make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path)
        assert trainer.is_ddp and trainer.device == torch.device("cpu") and trainer.grad_scaler is None
    finally:
        dist.destroy_process_group()


def test_3d_lowres_works(demo3d, monkeypatch, tmp_path):
    """3d_lowres is a plain (non-cascade) configuration for us: stage 1 runs (here on the full-res data)."""
    for name, value in {"nnUNet_anatomask_pretrain_epochs": "1", "nnUNet_anatomask_iters_per_epoch": "1",
                        "nnUNet_n_proc_DA": "0"}.items():
        monkeypatch.setenv(name, value)
    plans = demo3d.plans()
    plans["configurations"]["3d_lowres"] = {"inherits_from": "3d_fullres", "next_stage": "3d_cascade_fullres"}
    trainer = make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path, config="3d_lowres", plans=plans)
    assert not trainer.is_cascaded
    final = trainer.run_pretraining()
    assert load_weights_only(final)["configuration"] == "3d_lowres"
