"""The held-out reconstruction loss and checkpoint_best.pth (trainers/stage1_heldout.py, docs/watching.md)."""
import json
import os
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nnunetv2.run.run_training import maybe_load_checkpoint

from nnunet_anatomask.trainers.registry import nnUNetTrainerFinetune, nnUNetTrainerRandomMask
from nnunet_anatomask.trainers.stage1 import prepare_trainer
from nnunet_anatomask.trainers.stage1_heldout import BestCheckpoint, HeldOutLoss
from tests.conftest import run_cli
from tests.trainers.conftest import WATCH_RUN
from tests.trainers.helpers import assert_cnn_handover, fold_folder, make_trainer, stage1_log_text


def built_runner(planned, monkeypatch, results, fold=0):
    """The stage-1 runner of a RandomMask trainer, built (model, scheme, log) as run() builds it, not run."""
    for name, value in WATCH_RUN.items():
        monkeypatch.setenv(name, value)
    trainer = make_trainer(planned, nnUNetTrainerRandomMask, monkeypatch, results, fold=fold)
    prepare_trainer(trainer)
    trainer.stage1.build()
    return trainer.stage1


def global_rng() -> tuple:
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def assert_rng_unchanged(before: tuple) -> None:
    after = global_rng()
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]


def test_heldout_loss_is_fixed_and_follows_the_weights(demo3d, monkeypatch, tmp_path):
    """Two evaluations of the same weights agree exactly, whatever the global RNGs hold in between; a second build
    (a resumed run) draws the same crops and masks; neither building nor evaluating draws from the global torch /
    numpy / random streams; other weights give another loss. Catches: crops or masks drawn from the global streams
    (a resumed run, and every run, would score other crops, and training would draw other masks and batches)."""
    runner = built_runner(demo3d, monkeypatch, tmp_path)
    before = global_rng()
    heldout = HeldOutLoss(32)
    heldout.on_run_start(runner)
    first = heldout.evaluate(runner.model)
    assert_rng_unchanged(before)
    assert len(heldout.images) == 2  # 32 wanted, capped at nnU-Net's validation: 1 iteration x batch 2
    assert heldout.masks.sum(1).tolist() == [38, 38]  # round(0.6 x 64 cells) per crop
    assert np.isfinite(first) and runner.model.training  # the train mode is restored
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    assert heldout.evaluate(runner.model) == first
    again = HeldOutLoss(32)
    again.on_run_start(runner)
    assert torch.equal(again.images, heldout.images) and torch.equal(again.masks, heldout.masks)
    with torch.no_grad():
        runner.model.network.decoder.seg_layers[-1].weight.mul_(1.5)
    assert heldout.evaluate(runner.model) != first


def test_fold_all_has_no_heldout_loss_and_says_so(demo3d, monkeypatch, tmp_path):
    runner = built_runner(demo3d, monkeypatch, tmp_path, fold="all")
    heldout = HeldOutLoss(32)
    heldout.on_run_start(runner)
    assert heldout.images is None
    assert "Held-out loss: none: fold 'all' trains on every case" in open(runner.log.log_file).read()


def test_training_is_bit_identical_with_and_without_the_additions(watched, unwatched):
    """Held-out loss, probe and experiment logger on (watched) or off (unwatched), same seeds: the same training
    losses and final weights to the bit. Catches: any of them drawing from the global RNGs (e.g. the held-out
    masks by torch.rand without their generator) or changing the model (e.g. a probe that trains the encoder)."""
    losses = watched.checkpoint("checkpoint_final.pth")["logging"]["loss"]
    assert losses == unwatched.checkpoint("checkpoint_final.pth")["logging"]["loss"]
    a, b = (r.checkpoint("checkpoint_final.pth")["network_weights"] for r in (watched, unwatched))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "heldout_loss" not in unwatched.checkpoint("checkpoint_final.pth")["logging"]
    assert not os.path.isfile(os.path.join(unwatched.folder, "checkpoint_best.pth"))


def test_heldout_loss_in_log_checkpoint_summary_and_best(watched):
    """The loss of every epoch in the log file, the checkpoint's log and top level, summary.json; checkpoint_best
    holds the epoch of the lowest one."""
    final = watched.checkpoint("checkpoint_final.pth")
    losses = final["logging"]["heldout_loss"]
    assert len(losses) == 2 and all(np.isfinite(losses)) and final["heldout_loss"] == losses[-1]
    log = stage1_log_text(os.path.dirname(watched.folder))
    assert "Held-out loss: 2 fixed crops of 1 validation cases" in log
    assert log.count("heldout_loss ") == 2 and "(then held-out loss " in log
    best = watched.checkpoint("checkpoint_best.pth")
    epoch = int(np.argmin(losses))
    assert best["heldout_loss"] == min(losses) and best["current_epoch"] == epoch + 1
    summary = json.load(open(os.path.join(watched.folder, "summary.json")))
    assert summary["best_heldout_loss"] == min(losses) and summary["best_heldout_epoch"] == epoch
    assert summary["checkpoint_best"].endswith("checkpoint_best.pth")


class ScriptedRunner:
    """What BestCheckpoint uses of the runner: the log's values, the epoch counter, save()."""

    def __init__(self, values=None, current_epoch=0):
        self.log = SimpleNamespace(values=values or {}, print=lambda *args: None)
        self.current_epoch, self.best_checkpoint, self.saved = current_epoch, "checkpoint_best.pth", []

    def save(self, path: str) -> None:
        self.saved.append(self.current_epoch)


def test_best_checkpoint_follows_the_minimum():
    """Saved at every new minimum only (ties keep the earlier epoch), also after a resume, from the log's minimum.
    Catches: <= instead of <, saving every epoch, a resume that forgets the best so far."""
    runner, best = ScriptedRunner(), BestCheckpoint()
    best.on_run_start(runner)
    for epoch, loss in enumerate([3.0, 2.0, 2.5, 1.0, 1.0, 1.5]):
        runner.current_epoch = epoch + 1
        best.on_epoch_logged(runner, epoch, {"heldout_loss": loss})
    assert runner.saved == [1, 2, 4]
    summary = {}
    best.on_run_end(runner, summary)
    assert summary == {"best_heldout_loss": 1.0, "best_heldout_epoch": 3, "checkpoint_best": "checkpoint_best.pth"}

    resumed, best = ScriptedRunner({"heldout_loss": [3.0, 2.0, float("nan"), 0.5]}, current_epoch=3), BestCheckpoint()
    best.on_run_start(resumed)  # epoch 3's 0.5 was logged after the checkpoint it resumes from
    for epoch, loss in [(3, 2.2), (4, 1.9)]:
        resumed.current_epoch = epoch + 1
        best.on_epoch_logged(resumed, epoch, {"heldout_loss": loss})
    assert resumed.saved == [5] and best.best_epoch == 4


def test_stage2_from_checkpoint_best_by_nnunets_own_loading(demo3d, watched, monkeypatch, tmp_path):
    """checkpoint_best.pth is a -pretrained_weights file like checkpoint_final.pth: nnUNetTrainerFinetune, built as
    nnUNetv2_train ... -pretrained_weights PATH builds it, checks it and nnU-Net's own loading (maybe_load_checkpoint)
    takes every tensor but the segmentation layers."""
    best = os.path.join(watched.folder, "checkpoint_best.pth")
    finetune = make_trainer(demo3d, nnUNetTrainerFinetune, monkeypatch, tmp_path)
    maybe_load_checkpoint(finetune, continue_training=False, validation_only=False, pretrained_weights_file=best)
    assert_cnn_handover(finetune.network.state_dict(), watched.checkpoint("checkpoint_best.pth")["network_weights"])


@pytest.mark.slow
def test_stage2_from_checkpoint_best_through_the_cli(demo3d, in_terminal, tmp_path):
    """The documented command: nnUNetv2_train ... -tr nnUNetTrainerFinetune -pretrained_weights .../checkpoint_best."""
    fold, _ = in_terminal
    best = os.path.join(fold, "pretraining", "checkpoint_best.pth")
    results = tmp_path / "results"
    proc = run_cli(["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", "nnUNetTrainerFinetune",
                    "-pretrained_weights", best, "-device", "cpu"], demo3d.train_env(results))
    assert f"Loading pretrained weights from file  {best}" in proc.stdout  # nnU-Net's load_pretrained_weights
    fold0 = fold_folder(results, demo3d.dataset_name, "nnUNetTrainerFinetune", "3d_fullres", 0)
    assert os.path.isfile(os.path.join(fold0, "checkpoint_final.pth"))
