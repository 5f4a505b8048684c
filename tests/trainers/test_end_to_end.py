"""The default suite's real-CLI runs, shared between assertions: nnUNetv2_pretrain ... all (AnatoMask, 2 epochs so
that its teacher is used), nnUNetv2_train fold 0 reusing that stage-1 checkpoint, nnUNetv2_predict; the same
checkpoint through nnUNetTrainerFinetune (real CLI) and nnU-Net's plain trainer (its own -pretrained_weights code);
and nnUNetTrainerScratch. The rest of the matrix (other schemes, 2d, multichannel, ResEnc) is in test_matrix.py,
behind the slow marker."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from nnunetv2.run.run_training import maybe_load_checkpoint
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_anatomask.run_summary import summarise
from tests.conftest import run_cli
from tests.trainers.cli_runs import check_predictions, check_stage1_outputs, predict
from tests.trainers.helpers import assert_cnn_handover, fold_folder, load_weights_only, make_trainer, \
    relative_distances, stage1_log_text, stage2_log_text

TRAINER = "nnUNetTrainerAnatoMask"


@pytest.fixture(scope="module")
def pretrained_all(demo3d, tmp_path_factory):
    """nnUNetv2_pretrain D 3d_fullres all: (results folder, fold_all's stage-1 checkpoint)."""
    results = tmp_path_factory.mktemp("results_all")
    run_cli(["nnUNetv2_pretrain", demo3d.dataset_id, "3d_fullres", "all", "-tr", TRAINER, "-device", "cpu"],
            demo3d.train_env(results, nnUNet_anatomask_pretrain_epochs="2"))
    fold_all = fold_folder(results, demo3d.dataset_name, TRAINER, "3d_fullres", "all")
    assert not os.path.isfile(os.path.join(fold_all, "checkpoint_final.pth"))  # stage 1 only
    return results, os.path.join(fold_all, "pretraining", "checkpoint_final.pth")


@pytest.fixture(scope="module")
def fold0(demo3d, pretrained_all, tmp_path_factory):
    """nnUNetv2_train D 3d_fullres 0 with the same trainer (finds fold_all's checkpoint), then nnUNetv2_predict:
    (fold folder, nnUNetv2_train's stdout, predictions folder)."""
    results, _ = pretrained_all
    proc = run_cli(["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", TRAINER, "-device", "cpu"],
                   demo3d.train_env(results))
    out = tmp_path_factory.mktemp("pred")
    predict(demo3d, results, out, TRAINER)
    return fold_folder(results, demo3d.dataset_name, TRAINER, "3d_fullres", 0), proc.stdout, out


def test_stage1_outputs_and_anatomask_teacher(pretrained_all):
    _, ckpt_path = pretrained_all
    ckpt = check_stage1_outputs(os.path.dirname(os.path.dirname(ckpt_path)), "AnatoMask")
    teacher = {k: v for k, v in ckpt["scheme_state"]["scheme"].items() if k.startswith("teacher.network.")}
    assert teacher.keys() == {"teacher.network." + k for k in ckpt["network_weights"]}
    log = ckpt["logging"]
    assert log["alpha"] == [0.0, 0.5] and log["teacher_momentum"][0] == pytest.approx(0.999)
    overlap = log["hard_fg_overlap"]  # logged once alpha > 0
    assert len(overlap) == 2 and np.isnan(overlap[0]) and 0.0 <= overlap[1] <= 1.0
    assert "teacher_error" in stage1_log_text(os.path.dirname(os.path.dirname(ckpt_path)))


def test_fold_reuses_fold_all_and_starts_stage2_from_it(demo3d, pretrained_all, fold0, monkeypatch, tmp_path):
    """Stage 2 of fold 0 starts from fold_all's stage-1 weights (relative distance of every conv weight, as in
    test_finetune_cli_from_stage1_checkpoint), found without running stage 1 again; the log reads stage 1's
    lookup, with both budgets (fold_all's 2 epochs, this run's 1), before stage 2's optimiser. Catches: a hand-over
    that loads nothing or only part of the network."""
    _, ckpt = pretrained_all
    fold_dir, stdout, _ = fold0
    assert (f"Using the stage-1 checkpoint {ckpt} (AnatoMask, 2 epochs x 2 iterations; this run's stage-1 budget: "
            f"1 epochs x 2 iterations). The budgets differ; the checkpoint is used as it is. To pretrain with this "
            f"run's budget instead, move {os.path.dirname(ckpt)} away") in stage2_log_text(fold_dir)
    assert not os.path.isdir(os.path.join(fold_dir, "pretraining"))  # stage 1 did not run again
    assert stdout.index("Using the stage-1 checkpoint") < stdout.index("Initialized warmup_all optimizer")
    final = torch.load(os.path.join(fold_dir, "checkpoint_final.pth"), weights_only=False)["network_weights"]
    to_stage1 = relative_distances(final, load_weights_only(ckpt)["network_weights"])
    assert any(k.startswith("encoder.") for k in to_stage1) and any(k.startswith("decoder.") for k in to_stage1)
    assert max(to_stage1.values()) < 0.25, sorted(to_stage1.items(), key=lambda kv: -kv[1])[:3]


def test_predictions_and_run_summary(demo3d, fold0):
    fold_dir, _, out = fold0
    check_predictions(demo3d, out)
    validation = json.load(open(os.path.join(fold_dir, "validation", "summary.json")))
    text = summarise(fold_dir)
    assert f"mean {validation['foreground_mean']['Dice']:.3f}" in text and "stage-1 final loss (AnatoMask)" in text
    shown = subprocess.run([sys.executable, "-m",
                            "nnunet_anatomask.run_summary", fold_dir], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == text


def test_plain_nnunet_trainer_takes_our_checkpoint(demo3d, pretrained_all, monkeypatch, tmp_path):
    """nnU-Net's own -pretrained_weights path (maybe_load_checkpoint -> load_pretrained_weights), plain trainer."""
    _, ckpt = pretrained_all
    trainer = make_trainer(demo3d, nnUNetTrainer, monkeypatch, tmp_path)
    maybe_load_checkpoint(trainer, continue_training=False, validation_only=False, pretrained_weights_file=ckpt)
    weights = load_weights_only(ckpt)["network_weights"]
    assert_cnn_handover(trainer.network.state_dict(), weights)


def test_finetune_cli_from_stage1_checkpoint(demo3d, pretrained_all, monkeypatch, tmp_path):
    """Stage 2 of nnUNetTrainerFinetune starts from the -pretrained_weights file given on the real command line.

    Measure: per conv / transposed-conv weight (seg_layers aside), ||w_final - w_ref|| / ||w_ref||. After
    1 epoch x 2 SGD steps (lr <= 1e-2, momentum 0.99, gradient norm clipped to 12 by nnU-Net's train_step) the
    weights move by at most ~0.6 in norm, a few percent of every such tensor (the smallest, the first conv, has
    norm ~8), so the final weights must be within 0.25 of the stage-1 checkpoint's; an independent random init of
    the same network is ~sqrt(2) away (two independent He inits), which the test checks too, so the measure
    separates the two and cannot pass by accident. Mutation caught: stage 2 not starting from the loaded weights
    (e.g. the network re-initialised in nnUNetTrainerStage2Recipe.run_training before training)."""
    _, ckpt = pretrained_all
    results = tmp_path / "results"
    run_cli(["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", "nnUNetTrainerFinetune",
             "-pretrained_weights", ckpt, "-device", "cpu"], demo3d.train_env(results))
    fold0 = fold_folder(results, demo3d.dataset_name, "nnUNetTrainerFinetune", "3d_fullres", 0)
    final = torch.load(os.path.join(fold0, "checkpoint_final.pth"), weights_only=False)["network_weights"]
    stage1 = load_weights_only(ckpt)["network_weights"]
    random_init = make_trainer(demo3d, nnUNetTrainer, monkeypatch, tmp_path / "init")
    random_init.initialize()
    to_stage1 = relative_distances(final, stage1)
    to_random = relative_distances(final, random_init.network.state_dict())
    assert any(k.startswith("encoder.") for k in to_stage1) and any(k.startswith("decoder.") for k in to_stage1)
    assert max(to_stage1.values()) < 0.25, sorted(to_stage1.items(), key=lambda kv: -kv[1])[:3]
    assert min(to_random.values()) > 1.0, sorted(to_random.items(), key=lambda kv: kv[1])[:3]


@pytest.mark.slow  # the default suite's budget: Scratch trains through nnU-Net's run_training in the tiny evaluation
# (tests/evaluation/test_evaluate_tiny.py, no fold_all for Scratch), its optimiser and warm-up in tests/trainers/test_stage2_optimisers.py
def test_scratch_cli(demo3d, tmp_path):
    """nnUNetTrainerScratch runs stage 2's recipe with the knobs' budget and no stage-1 weights.

    Checked: no stage 1 (no pretraining folder, no stage-1 or pretrained-weights line in the log); the full recipe
    (nnUNetTrainer_warmup's warm-up optimiser line); the knob budget (1 epoch: current_epoch 1, one train loss
    logged); and the trainer name nnU-Net predicts with. Mutation caught: nnUNetTrainerStage2Recipe built on
    nnUNetTrainer instead of nnUNetTrainer_warmup (no warm-up), or Scratch getting a scheme trainer's stage 1."""
    results = tmp_path / "results"
    run_cli(["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", "nnUNetTrainerScratch", "-device", "cpu"],
            demo3d.train_env(results))
    fold0 = fold_folder(results, demo3d.dataset_name, "nnUNetTrainerScratch", "3d_fullres", 0)
    final = torch.load(os.path.join(fold0, "checkpoint_final.pth"), weights_only=False)
    assert not os.path.isdir(os.path.join(fold0, "pretraining"))
    log = stage2_log_text(fold0)
    assert "stage-1" not in log and "pretrained weights" not in log.lower()
    assert "Initialized warmup_all optimizer and lr_scheduler at epoch 0" in log
    assert final["trainer_name"] == "nnUNetTrainerScratch"
    assert final["current_epoch"] == 1 and len(final["logging"]["train_losses"]) == 1


@pytest.mark.slow  # the default suite's budget: the tiny evaluation's recipe axis runs a recipe trainer on its
# scheme's stage 1 through the real CLIs, tests/trainers/test_recipes.py pins what each phase trains
def test_recipe_trainer_shares_stage1_and_predicts(demo3d, pretrained_all, tmp_path):
    """nnUNetv2_train -tr nnUNetTrainerAnatoMask_frozenEnc (2 epochs: one per phase) finds nnUNetTrainerAnatoMask's
    fold_all stage 1 instead of running its own, trains in its own fold folder, logs the transfer report and its
    phases; after real training its encoder is stage 1's bit for bit (frozen) and its decoder is not (loaded fresh,
    trained); nnUNetv2_predict -tr finds it. Mutation caught: a recipe trainer looking for stage 1 under its own
    name (stage 1 runs again), or an encoder that moves."""
    results, ckpt = pretrained_all
    name = "nnUNetTrainerAnatoMask_frozenEnc"
    run_cli(["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", name, "-device", "cpu"],
            demo3d.train_env(results, nnUNet_anatomask_finetune_epochs="2"))
    fold = fold_folder(results, demo3d.dataset_name, name, "3d_fullres", 0)
    log = stage2_log_text(fold)
    assert f"Using the stage-1 checkpoint {ckpt}" in log and not os.path.isdir(os.path.join(fold, "pretraining"))
    assert f"Transfer report: stage-1 checkpoint {ckpt} -> this network (transfer strict, loading encoder)" in log
    assert "Recipe frozenEnc, phase warmup_decoder (epochs 0-0)" in log and "phase train_decoder (epochs 1-1)" in log
    final = torch.load(os.path.join(fold, "checkpoint_final.pth"), weights_only=False)["network_weights"]
    stage1 = load_weights_only(ckpt)["network_weights"]
    encoder = [k for k in final if k.startswith("encoder.")]
    assert encoder and all(torch.equal(final[k], stage1[k]) for k in encoder)
    assert all(not torch.equal(final[k], stage1[k]) for k in final if k.startswith("decoder.stages.") and
               k.endswith("conv.weight"))
    out = tmp_path / "pred"
    predict(demo3d, results, out, name)
    check_predictions(demo3d, out)
