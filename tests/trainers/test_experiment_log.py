"""nnU-Net's experiment logger in stage 1 (trainers/experiment_log.py, docs/watching.md): through a fake backend in
place of nnU-Net's WandbLogger (default), and through W&B itself, offline, where wandb is installed."""
import glob
import os

import numpy as np
import pytest
from nnunetv2.training.logging import nnunet_logger

EPOCH_KEYS = {"stage1/loss", "stage1/heldout_loss", "stage1/lr", "stage1/epoch_time", "stage1/mask_ratio",
              "stage1/realised_ratio", "stage1/heldout_time", "stage1/probe_dice"}


def test_stage1_metrics_reach_the_backend_under_their_own_run_name(watched):
    """nnU-Net's MetaLogger, switched on by nnUNet_wandb_enabled=1, builds stage 2's backend (nnU-Net's __init__) and
    stage 1's (on fold_0/pretraining): stage 1's receives every epoch's figures, the pictures and the summary, under a
    run name that says stage 1, and is finished; stage 2's run name says stage 2. Catches: stage 1 not logging to the
    backend, both stages under one name (or nnU-Net's random one)."""
    stage2, stage1 = watched.backends
    assert stage1.output_folder == watched.folder and stage1.resume is False
    assert stage1.run.name == "Dataset990_Demo 3d_fullres fold 0: stage 1 (RandomMask pretraining)"
    assert stage2.run.name == "Dataset990_Demo 3d_fullres fold 0: stage 2 (nnUNetTrainerRandomMask)"
    for epoch in (0, 1):
        logged = {key: value for key, value, step in stage1.logged if step == epoch}
        assert EPOCH_KEYS <= set(logged), EPOCH_KEYS - set(logged)
        assert all(np.isfinite(v) for k, v in logged.items() if k not in ("stage1/reconstruction", "stage1/progress"))
        assert {"stage1/reconstruction", "stage1/progress"} <= set(logged)  # 2 epochs: a picture each
    final = watched.checkpoint("checkpoint_final.pth")["logging"]
    assert [v for k, v, _ in stage1.logged if k == "stage1/heldout_loss"] == final["heldout_loss"]
    assert stage1.summary["stage1/best_heldout_loss"] == min(final["heldout_loss"])
    assert stage1.config["stage"] == "stage 1 (pretraining)" and stage1.config["scheme"] == "RandomMask"
    assert stage1.run.finished and not stage2.logged
    assert "Experiment logger: FakeBackend, run 'Dataset990_Demo 3d_fullres fold 0: stage 1" in watched.stdout


def test_wandb_offline_runs_of_both_stages(in_terminal):
    """The real nnUNetv2_pretrain with nnUNet_wandb_enabled=1, nnUNet_wandb_mode=offline: stage 1's W&B run (under
    fold_0/pretraining/wandb) holds the stage-1 figures and its own name; stage 2's run (opened by nnU-Net's trainer
    constructor, under fold_0/wandb) is another one, named stage 2."""
    if nnunet_logger.wandb is None:
        pytest.skip("wandb is not installed (pip install -e '.[wandb]'): the fake-backend test covers the logger")
    fold, _ = in_terminal
    stage1 = glob.glob(os.path.join(fold, "pretraining", "wandb", "offline-run-*", "run-*.wandb"))
    stage2 = glob.glob(os.path.join(fold, "wandb", "offline-run-*", "run-*.wandb"))
    assert len(stage1) == 1 and len(stage2) == 1, (stage1, stage2)
    records = open(stage1[0], "rb").read()
    for key in (b"stage1/loss", b"stage1/heldout_loss", b"stage1/lr", b"stage1/epoch_time", b"stage1/reconstruction"):
        assert key in records, key
    assert b"fold 0: stage 1 (RandomMask pretraining)" in records
    assert b"fold 0: stage 2 (nnUNetTrainerRandomMask)" in open(stage2[0], "rb").read()
