"""Interruption (SIGKILL during checkpoint writes; the stage-2 kill in the slow set), non-finite losses, refused
set-ups."""
import os

import pytest
import torch
import torch.distributed as dist

from nnunet_anatomask.checkpoint_io import CheckpointError
from nnunet_anatomask.pretraining import schedules
from nnunet_anatomask.run_lock import LOCK_NAME, read_holder
from nnunet_anatomask.pretraining.schemes.random_mask import RandomMaskScheme
from nnunet_anatomask.trainers.registry import nnUNetTrainerAnatoMask, nnUNetTrainerRandomMask
from nnunet_anatomask.trainers.stage1 import NonFiniteLossError
from nnunet_anatomask.trainers.stage2 import ConfigurationError
from tests.conftest import TINY_RUN, run_cli
from tests.trainers.helpers import assert_same, fold_folder, load_weights_only, make_trainer, stage1_log_text, \
    stage2_log_text

TR = "nnUNetTrainerRandomMask"
KILLER = os.path.join(os.path.dirname(__file__), "kill_at_checkpoint_write")  # its sitecustomize.py


def killing_env(planned, results, write: int, log, **knobs) -> dict:
    """A training environment whose nnUNetv2_train is SIGKILLed in its `write`-th checkpoint write, the file
    being written cut to half (KILL_AT_CHECKPOINT_WRITE's sitecustomize); conftest's clean_env strips PYTHONPATH,
    so it is set here, for this subprocess only."""
    return planned.train_env(results, PYTHONPATH=KILLER, KILL_AT_CHECKPOINT_WRITE=str(write),
                             CHECKPOINT_WRITE_LOG=str(log), **knobs)


def a_pid(log) -> int:
    """The pid of the process that wrote the log's checkpoints (the killed run)."""
    return int(log.read_text().splitlines()[-1].split(" ", 1)[0])


def killed_write(log) -> str:
    """The path of the last checkpoint write of the log: the one the process died in."""
    return log.read_text().splitlines()[-1].split(" ", 2)[2]


def test_kill_in_a_stage1_write_then_continue_both_stages(demo3d, tmp_path, monkeypatch):
    """AnatoMask (teacher in the scheme state), 3 stage-1 epochs: run A dies in the 2nd stage-1 checkpoint write
    (epoch 1's latest, cut in half); what --c restores (network, teacher, optimiser, RNG, log, epoch) equals what
    was saved; run B (nnUNetv2_train --c) resumes stage 1 at epoch 1, finishes it with the schedules of an
    uninterrupted run, then runs stage 2. Mutations caught: a non-atomic stage-1 write (run A leaves a broken
    checkpoint_latest), a resume that drops part of the state, schedules restarted at epoch 0."""
    tr, epochs = "nnUNetTrainerAnatoMask", 3
    results = tmp_path / "results"
    knobs = dict(nnUNet_anatomask_pretrain_epochs=str(epochs),
                 nnUNet_anatomask_heldout_crops="0")  # no checkpoint_best writes: the 2nd write is epoch 1's latest
    cmd = ["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", tr, "-device", "cpu"]
    fold = fold_folder(results, demo3d.dataset_name, tr, "3d_fullres", 0)
    latest = os.path.join(fold, "pretraining", "checkpoint_latest.pth")

    log_a = tmp_path / "writes_a.log"
    a = run_cli(cmd, killing_env(demo3d, results, 2, log_a, **knobs), check=False)
    assert a.returncode == -9, a.stderr[-3000:]
    assert os.path.dirname(killed_write(log_a)) == os.path.dirname(latest)
    saved = load_weights_only(latest)
    assert saved["current_epoch"] == 1  # the 1st write survived the cut 2nd one
    assert read_holder(os.path.join(fold, LOCK_NAME))["pid"] == a_pid(log_a)  # SIGKILL left A's lock behind

    for name, value in {**TINY_RUN, **knobs}.items():  # the budget of run A (in the checkpoint)
        monkeypatch.setenv(name, value)
    trainer = make_trainer(demo3d, nnUNetTrainerAnatoMask, monkeypatch, tmp_path / "restore",
                           continue_training=True)  # another fold folder: A's stale lock stays for run B
    trainer.stage1.build()
    trainer.stage1.load(latest)
    restored = trainer.stage1.checkpoint()
    for key in ("init_args",):
        saved.pop(key), restored.pop(key)
    assert_same(saved, restored)
    assert any(k.startswith("teacher.") for k in restored["scheme_state"]["scheme"])

    run_cli(cmd + ["--c"], demo3d.train_env(results, **knobs))
    assert "Resuming stage 1 (AnatoMask) from" in stage1_log_text(fold) and "at epoch 1" in stage1_log_text(fold)
    assert f"Taking over the lock of {fold}: its holder, pid {a_pid(log_a)} on host" in stage2_log_text(fold)
    assert not os.path.exists(os.path.join(fold, LOCK_NAME))  # run B released it
    log = load_weights_only(os.path.join(fold, "pretraining", "checkpoint_final.pth"))["logging"]
    assert len(log["loss"]) == epochs
    for e in range(epochs):
        assert log["alpha"][e] == pytest.approx(schedules.hard_fraction_anatomask(e, epochs))
        assert log["teacher_momentum"][e] == pytest.approx(schedules.ema_momentum(e, epochs))
        assert log["lr"][e] == pytest.approx(schedules.warmup_cosine_lr(e, epochs, 1e-4, 1e-6, 0.02))
    assert "Stage 2 starts from the stage-1 weights" in stage2_log_text(fold)
    assert os.path.isfile(os.path.join(fold, "checkpoint_final.pth"))


@pytest.mark.slow
def test_kill_during_checkpoint_writes_then_continue(demo3d, tmp_path):
    """Run A dies in the 2nd stage-1 checkpoint write; run B (--c) resumes stage 1, finishes it and dies in the
    3rd stage-2 write (epoch 1's checkpoint_latest, after epoch 0's latest and best); run C (--c) resumes stage 2
    from epoch 0's checkpoint_latest and finishes.

    The fault is injected from outside (kill_at_checkpoint_write/sitecustomize.py wraps torch.save in the real
    nnUNetv2_train process). Mutation caught: a checkpoint written straight to its final name (no temporary file
    + os.replace, in checkpoint_io.atomic_save or in stage 2's save_checkpoint) leaves a half checkpoint that run
    A's or run B's checks (or the resume) fail on."""
    results = tmp_path / "results"
    knobs = dict(nnUNet_anatomask_pretrain_epochs="3", nnUNet_anatomask_finetune_epochs="3",
                 nnUNet_anatomask_heldout_crops="0")  # the write count below has no stage-1 checkpoint_best
    cmd = ["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", TR, "-device", "cpu"]
    fold = fold_folder(results, demo3d.dataset_name, TR, "3d_fullres", 0)
    pre = os.path.join(fold, "pretraining")

    log_a = tmp_path / "writes_a.log"
    a = run_cli(cmd, killing_env(demo3d, results, 2, log_a, **knobs), check=False)
    assert a.returncode == -9, a.stderr[-3000:]
    assert os.path.dirname(killed_write(log_a)) == pre  # the fault hit stage 1's 2nd checkpoint
    assert load_weights_only(os.path.join(pre, "checkpoint_latest.pth"))["current_epoch"] == 1  # the 1st write
    assert [f for f in os.listdir(pre) if ".tmp" in f]  # the cut write never replaced it

    log_b = tmp_path / "writes_b.log"
    b = run_cli(cmd + ["--c"], killing_env(demo3d, results, 5, log_b, **knobs), check=False)
    assert b.returncode == -9, b.stderr[-3000:]
    cut = killed_write(log_b)  # writes 1-2: stage 1's epoch-1 latest and final; 3-4: stage 2's epoch-0 latest, best
    assert os.path.dirname(cut) == fold and os.path.basename(cut).startswith("checkpoint_latest.pth")
    assert "at epoch 1" in stage1_log_text(fold)
    assert os.path.isfile(os.path.join(pre, "checkpoint_final.pth"))
    assert torch.load(os.path.join(fold, "checkpoint_latest.pth"), weights_only=False)["current_epoch"] == 1

    run_cli(cmd + ["--c"], demo3d.train_env(results, **knobs))
    assert "Stage 2 resumed at epoch 1: stage-1 weights are not loaded again" in stage2_log_text(fold)
    assert os.path.isfile(os.path.join(fold, "checkpoint_final.pth"))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(demo3d, monkeypatch, tmp_path):
    for name, value in {"nnUNet_anatomask_pretrain_epochs": "2", "nnUNet_anatomask_iters_per_epoch": "1",
                        "nnUNet_anatomask_save_every": "1", "nnUNet_n_proc_DA": "0"}.items():
        monkeypatch.setenv(name, value)
    original = RandomMaskScheme.loss

    def nan_in_epoch_1(self, images, prediction, cell_mask, epoch):
        loss, figures = original(self, images, prediction, cell_mask, epoch)
        return (loss * float("nan") if epoch == 1 else loss), figures

    monkeypatch.setattr(RandomMaskScheme, "loss", nan_in_epoch_1)
    trainer = make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path)
    with pytest.raises(NonFiniteLossError, match="non-finite loss in 1 of 1 steps of epoch 1"):
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


def test_stage1_under_ddp_runs_on_the_requested_cpu(demo3d, monkeypatch, tmp_path):
    """Under a process group nnU-Net puts a trainer on cuda:<rank> (its own DDP, stage 2, is CUDA-only); stage 1
    runs on the device it was asked for (gloo: nnUNetv2_pretrain -device cpu -num_gpus N), without any change to
    nnU-Net's trainer, and multi-GPU is not refused."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        trainer = make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path)
        assert trainer.is_ddp and trainer.device.type == "cuda"  # nnU-Net's choice, untouched
        assert trainer.stage1.device == torch.device("cpu")
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
