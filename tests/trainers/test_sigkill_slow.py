"""(slow; the default suite kills inside a checkpoint write instead, test_reliability.py) --c after a SIGKILL
in the middle of stage 1: the state right after loading equals the saved state, and the
real nnUNetv2_train --c continues from the saved epoch (AnatoMask, so the EMA teacher is covered)."""
import os

import pytest

from nnunet_anatomask.pretraining import schedules
from nnunet_anatomask.trainers.registry import nnUNetTrainerAnatoMask
from tests.conftest import BIN, run_cli
from tests.trainers.helpers import assert_same, fold_folder, load_weights_only, make_trainer, stage1_log_text
from tests.trainers.cli_runs import kill_after_epoch

EPOCHS = 4


@pytest.mark.slow
def test_sigkill_mid_stage1_then_continue(demo3d, tmp_path, monkeypatch):
    results = tmp_path / "results"
    env = demo3d.train_env(results, nnUNet_anatomask_pretrain_epochs=str(EPOCHS))
    fold_dir = fold_folder(results, demo3d.dataset_name, "nnUNetTrainerAnatoMask", "3d_fullres", 0)
    latest = os.path.join(fold_dir, "pretraining", "checkpoint_latest.pth")
    cmd = [os.path.join(BIN, "nnUNetv2_train"), "990", "3d_fullres", "0", "-tr", "nnUNetTrainerAnatoMask",
           "-device", "cpu"]
    kill_after_epoch(cmd, env, latest, 2)
    saved = load_weights_only(latest)
    assert not os.path.isfile(os.path.join(fold_dir, "pretraining", "checkpoint_final.pth"))

    # In-process: what --c restores equals what was saved (network, teacher, optimiser, RNG, log, epoch).
    for k in ("nnUNet_anatomask_pretrain_epochs", "nnUNet_anatomask_iters_per_epoch"):
        monkeypatch.setenv(k, env[k])
    trainer = make_trainer(demo3d, nnUNetTrainerAnatoMask, monkeypatch, results, continue_training=True)
    trainer.initialize()
    runner = trainer.stage1
    runner.build()
    runner.load(latest)
    restored = runner.checkpoint()
    restored.pop("init_args")
    saved.pop("init_args")
    assert_same({k: v for k, v in saved.items() if k != "scheme_state"},
                {k: v for k, v in restored.items() if k != "scheme_state"})
    assert_same(saved["scheme_state"]["scheme"], restored["scheme_state"]["scheme"], "teacher")
    assert_same(saved["scheme_state"]["model_extra"], restored["scheme_state"]["model_extra"], "mask tokens")
    assert_same(saved["scheme_state"]["rng"], restored["scheme_state"]["rng"], "rng")
    assert any(k.startswith("teacher.") for k in restored["scheme_state"]["scheme"])
    resumed_epoch = saved["current_epoch"]

    # The real CLI with --c finishes stage 1 from that epoch, then stage 2.
    run_cli(["nnUNetv2_train", 990, "3d_fullres", 0, "-tr", "nnUNetTrainerAnatoMask",
             "-device", "cpu", "--c"], env)
    log_text = stage1_log_text(fold_dir)
    assert f"at epoch {resumed_epoch}" in log_text
    final = load_weights_only(os.path.join(fold_dir, "pretraining", "checkpoint_final.pth"))
    log = final["logging"]
    assert len(log["loss"]) == EPOCHS
    for e in range(EPOCHS):
        assert log["alpha"][e] == pytest.approx(schedules.hard_fraction_anatomask(e, EPOCHS))
        assert log["teacher_momentum"][e] == pytest.approx(schedules.ema_momentum(e, EPOCHS))
        assert log["lr"][e] == pytest.approx(schedules.warmup_cosine_lr(e, EPOCHS, 1e-4, 1e-6, 0.02))
    assert os.path.isfile(os.path.join(fold_dir, "checkpoint_final.pth"))
