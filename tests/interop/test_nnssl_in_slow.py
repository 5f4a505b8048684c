"""Theirs in, through the real console scripts (slow): the ResEnc fixture continued by nnUNetv2_pretrain and
fine-tuned by nnUNetv2_train -tr nnUNetTrainerFinetune from the plans nnUNetv2_plan_like_pretrained wrote, and from
the setting nnUNet_anatomask_pretrained_weights; the Primus fixture (pretrained at 64^3, so its position embedding
is interpolated to the demo's 32^3) continued by nnUNetv2_pretrain -pretrained_weights, fine-tuned by our Primus
trainer's stage 2, and exported for nnU-Net's own nnUNet_Primus_S_Trainer."""
import os

import pytest
import torch
from nnunetv2.run.run_training import maybe_load_checkpoint
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.nnUNetTrainer.primus.primus_trainers import nnUNet_Primus_S_Trainer

from tests.conftest import run_cli
from tests.interop import nnssl_fixtures as fx
from tests.interop.test_nnssl_in import PLANS, copy_planned, expected_line, plans_without_checkpoint, \
    resenc_target  # noqa: F401 - fixture
from tests.trainers.helpers import fold_folder, load_weights_only, make_trainer, relative_distances, \
    stage1_log_text, stage2_log_text

pytestmark = pytest.mark.slow


def test_resenc_fixture_through_pretrain_and_finetune_clis(resenc_target, monkeypatch, tmp_path):
    """Stage 1 continued (nnUNetv2_pretrain -p P: the plans name the checkpoint) and stage 2 (nnUNetv2_train -p P
    -tr nnUNetTrainerFinetune), each logging the tensor counts; after 1 epoch x 2 SGD steps the fine-tuned encoder is
    within 0.25 (relative) of the fixture's and a random initialisation is more than 1.0 away (the measure of
    tests/trainers/test_end_to_end.py)."""
    planned, path = resenc_target
    results = tmp_path / "results"
    env = planned.train_env(results)
    run_cli(["nnUNetv2_pretrain", planned.dataset_id, "3d_fullres", "all", "-p", PLANS, "-tr",
             "nnUNetTrainerAnatoMask", "-device", "cpu"], env)
    fold_all = fold_folder(results, planned.dataset_name, "nnUNetTrainerAnatoMask", "3d_fullres", "all", PLANS)
    assert expected_line(f"initial checkpoint {path}") in stage1_log_text(fold_all)
    run_cli(["nnUNetv2_train", planned.dataset_id, "3d_fullres", 0, "-p", PLANS, "-tr", "nnUNetTrainerFinetune",
             "-device", "cpu"], env)
    fold0 = fold_folder(results, planned.dataset_name, "nnUNetTrainerFinetune", "3d_fullres", 0, PLANS)
    assert expected_line(f"pretrained checkpoint {path} (named by the plans)") in stage2_log_text(fold0)
    final = torch.load(os.path.join(fold0, "checkpoint_final.pth"), weights_only=False)["network_weights"]
    source = {k[len(fx.PREFIX):]: v for k, v in fx.resenc_checkpoint()["network_weights"].items()}
    to_source = relative_distances({k: final[k] for k in source}, source)
    random_init = make_trainer(planned, nnUNetTrainer, monkeypatch, tmp_path / "init", plans=planned.plans(PLANS))
    random_init.initialize()
    to_random = relative_distances({k: final[k] for k in source},
                                   {k: v for k, v in random_init.network.state_dict().items() if k in source})
    assert max(to_source.values()) < 0.25 and min(to_random.values()) > 1.0


def test_resenc_fixture_through_the_setting_on_the_cli(resenc_target, tmp_path):
    """nnUNet_anatomask_pretrained_weights=<nnssl checkpoint> nnUNetv2_train ... -tr nnUNetTrainerFinetune (real
    CLI, 1 epoch x 2 iterations) on plans with the checkpoint's network that name no checkpoint: the fold's log has
    the counts (stem, encoder, decoder 0, the rest fresh: the decoder, as nnssl loads), why the decoder is fresh,
    and the checkpoint's citation; after the 2 SGD steps the encoder is within 0.25 (relative) of the fixture's,
    where a fresh initialisation is about 1.4 away (tests/trainers/helpers.relative_distances). Mutation caught:
    the report printed but the weights not loaded."""
    planned, path = resenc_target
    plans = plans_without_checkpoint(planned, "nnUNetPlans_resencNoCkpt")
    results = tmp_path / "results"
    run_cli(["nnUNetv2_train", planned.dataset_id, "3d_fullres", 0, "-p", plans, "-tr", "nnUNetTrainerFinetune",
             "-device", "cpu"], planned.train_env(results, nnUNet_anatomask_pretrained_weights=path))
    fold = fold_folder(results, planned.dataset_name, "nnUNetTrainerFinetune", "3d_fullres", 0, plans)
    log = stage2_log_text(fold)
    assert expected_line(f"nnUNet_anatomask_pretrained_weights={path}") in log
    assert "  fresh (decoder: loading the encoder only): decoder.stages.0, decoder.stages.1" in log
    assert "Please cite (Pre-training method 'Fixture MAE'): Fixture (2026)." in log
    final = torch.load(os.path.join(fold, "checkpoint_final.pth"), weights_only=False)["network_weights"]
    source = {k[len(fx.PREFIX):]: v for k, v in fx.resenc_checkpoint()["network_weights"].items()}
    assert max(relative_distances({k: final[k] for k in source}, source).values()) < 0.25


def test_primus_fixture_continued_fine_tuned_and_exported(demo3d, monkeypatch, tmp_path):
    planned = copy_planned(demo3d, tmp_path / "data")
    path = fx.save(fx.primus_checkpoint(), tmp_path / "primus_nnssl.pth")
    results = tmp_path / "results"
    trainer = "nnUNetTrainerRandomMask_PrimusS"
    env = planned.train_env(results, nnUNet_anatomask_iters_per_epoch="1")
    run_cli(["nnUNetv2_pretrain", planned.dataset_id, "3d_fullres", "all", "-tr", trainer, "-device", "cpu",
             "-pretrained_weights", path], env)
    fold_all = fold_folder(results, planned.dataset_name, trainer, "3d_fullres", "all")
    log = stage1_log_text(fold_all)
    assert "tensors transferred (stem 2, encoder 279, decoder 0), 11 left at their fresh start" in log
    assert "adapted: eva.pos_embed: position embedding, token grid [8, 8, 8] -> [4, 4, 4]: interpolated " \
           "trilinearly" in log
    run_cli(["nnUNetv2_train", planned.dataset_id, "3d_fullres", 0, "-tr", trainer, "-device", "cpu"], env)
    log = stage2_log_text(fold_folder(results, planned.dataset_name, trainer, "3d_fullres", 0))
    assert "Using the stage-1 checkpoint" in log and "Transfer report: stage-1 checkpoint " in log
    assert "tensors transferred (stem 2, encoder 279, decoder 1), 10 left at their fresh start" in log

    exported = tmp_path / "for_nnunet_primus.pth"
    run_cli(["nnUNetv2_export_pretrained", path, "-d", planned.dataset_id, "-c", "3d_fullres", "-tr",
             "nnUNet_Primus_S_Trainer", "-o", exported], planned.env(str(results)))
    target = make_trainer(planned, nnUNet_Primus_S_Trainer, monkeypatch, tmp_path / "target")
    maybe_load_checkpoint(target, continue_training=False, validation_only=False, pretrained_weights_file=str(exported))
    state, source = target.network.state_dict(), fx.primus_checkpoint()["network_weights"]
    for key in source:
        if key != "eva.pos_embed":
            assert torch.equal(state[key], source[key]), key
    assert state["eva.pos_embed"].shape == (1, 64, 396)
    assert load_weights_only(str(exported))["fresh_keys"][0] == "mask_token"
