"""The Primus (ViT) family through the real CLIs: nnUNetv2_train -tr nnUNetTrainerRandomMask_PrimusS (token-dropping
stage 1, then nnU-Net's Primus recipe), nnUNetv2_export_pretrained, and nnU-Net's own nnUNet_Primus_S_Trainer taking
the exported file through its -pretrained_weights code (maybe_load_checkpoint -> load_pretrained_weights)."""
import os
import re

import torch
from nnunetv2.run.run_training import maybe_load_checkpoint
from nnunetv2.training.nnUNetTrainer.primus.primus_trainers import nnUNet_Primus_S_Trainer

from tests.conftest import run_cli
from tests.trainers.helpers import fold_folder, load_weights_only, make_trainer, stage2_log_text
from tests.trainers.cli_runs import check_stage1_outputs

TRAINER = "nnUNetTrainerRandomMask_PrimusS"


def test_primus_variant_trains_and_exports_into_nnunets_primus_trainer(demo3d, monkeypatch, tmp_path):
    results = tmp_path / "results"
    env = demo3d.train_env(results, nnUNet_anatomask_iters_per_epoch="1")
    run_cli(["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", TRAINER, "-device", "cpu"], env)
    fold_dir = fold_folder(results, demo3d.dataset_name, TRAINER, "3d_fullres", 0)
    ckpt = check_stage1_outputs(fold_dir, "RandomMask")
    assert ckpt["architecture"].endswith("primus.Primus")
    assert any(k.startswith("decoder_blocks.") for k in ckpt["scheme_state"]["model_extra"])  # not network_weights
    handover = re.search(r"Stage 2 starts from the stage-1 weights of .*", stage2_log_text(fold_dir)).group(0)
    assert "down_projection 2, eva " in handover, handover  # the encoder went to stage 2, in the network's order
    final = torch.load(os.path.join(fold_dir, "checkpoint_final.pth"), weights_only=False)
    assert final["trainer_name"] == TRAINER and final["current_epoch"] == 1

    exported = tmp_path / "for_nnunet_primus.pth"
    stage1 = os.path.join(fold_dir, "pretraining", "checkpoint_final.pth")
    run_cli(["nnUNetv2_export_pretrained", stage1, "-d", demo3d.dataset_id, "-c", "3d_fullres", "-tr",
             "nnUNet_Primus_S_Trainer", "-o", exported], demo3d.env(str(results)))
    assert sorted(os.listdir(os.path.join(results, demo3d.dataset_name))) == [f"{TRAINER}__nnUNetPlans__3d_fullres"]
    target = make_trainer(demo3d, nnUNet_Primus_S_Trainer, monkeypatch, tmp_path / "target")
    maybe_load_checkpoint(target, continue_training=False, validation_only=False, pretrained_weights_file=str(exported))
    state, weights = target.network.state_dict(), load_weights_only(stage1)["network_weights"]
    encoder = [k for k in state if k.startswith(("down_projection.", "eva."))]
    assert "eva.pos_embed" in encoder
    for key in encoder:
        assert torch.equal(state[key], weights[key]), key
