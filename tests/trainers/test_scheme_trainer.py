"""End to end through the real CLIs: stage 1 -> stage 2 -> nnUNetv2_predict (test budget: 1 epoch x 2
iterations per stage)."""
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from tests.conftest import run_cli
from tests.trainers.helpers import fold_folder, load_weights_only, stage1_log_text, stage2_log_text

RESULT_KEYS = {"network_weights", "scheme", "scheme_state", "optimizer_state", "grad_scaler_state", "current_epoch",
               "logging", "init_args", "trainer_name", "plans_name", "plans_hash", "configuration", "patch_size",
               "input_channels", "architecture"}


def check_stage1_outputs(fold_dir: str, scheme: str, channels: int) -> dict:
    pre = os.path.join(fold_dir, "pretraining")
    ckpt = load_weights_only(os.path.join(pre, "checkpoint_final.pth"))
    assert RESULT_KEYS <= set(ckpt), RESULT_KEYS - set(ckpt)
    assert ckpt["scheme"] == scheme and ckpt["input_channels"] == channels
    assert not any(k.startswith("teacher") for k in ckpt["network_weights"])
    assert not os.path.isfile(os.path.join(pre, "checkpoint_latest.pth"))  # only final is kept
    assert os.path.isfile(os.path.join(pre, "progress.png"))
    assert [f for f in os.listdir(pre) if f.startswith("reconstruction_epoch_")]
    summary = json.load(open(os.path.join(pre, "summary.json")))
    assert summary["scheme"] == scheme and np.isfinite(summary["final_loss"])
    assert summary["checkpoint"].endswith("checkpoint_final.pth")
    return ckpt


def train_and_predict(planned, tmp_path, trainer: str, config: str, scheme: str, channels: int = 1,
                      plans: str = "nnUNetPlans", predict: bool = True) -> str:
    env = planned.train_env(tmp_path / "results")
    run_cli(["nnUNetv2_train", planned.dataset_id, config, 0, "-tr", trainer, "-p", plans, "-device", "cpu"], env)
    fold_dir = fold_folder(tmp_path / "results", planned.dataset_name, trainer, config, 0, plans)
    check_stage1_outputs(fold_dir, scheme, channels)
    assert "Epoch 0 (stage 1: " in stage1_log_text(fold_dir)
    log2 = stage2_log_text(fold_dir)
    assert "Stage 2 starts from the stage-1 weights" in log2
    assert os.path.isfile(os.path.join(fold_dir, "checkpoint_final.pth"))
    assert os.path.isfile(os.path.join(fold_dir, "validation", "summary.json"))
    if predict:
        out = tmp_path / "pred"
        run_cli(["nnUNetv2_predict", "-i", planned.images_ts(), "-o", out, "-d", planned.dataset_id, "-c", config,
                 "-f", 0, "-tr", trainer, "-p", plans, "-device", "cpu", "-npp", 1, "-nps", 1],
                planned.env(str(tmp_path / "results")))
        preds = sorted(p for p in os.listdir(out) if p.endswith(".nii.gz"))
        assert len(preds) == len(os.listdir(planned.images_ts())) // channels
        seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out / preds[0])))
        assert set(np.unique(seg)) <= {0, 1}
    return fold_dir


def test_randommask_3d_fullres(demo3d, tmp_path):
    train_and_predict(demo3d, tmp_path, "nnUNetTrainerRandomMask", "3d_fullres", "RandomMask")


def test_randommask_2d(demo3d, tmp_path):
    train_and_predict(demo3d, tmp_path, "nnUNetTrainerRandomMask", "2d", "RandomMask")


def test_anatomask_3d_fullres(demo3d, tmp_path):
    """Two stage-1 epochs so that alpha > 0 in the second: the teacher's error map is used and logged."""
    env = demo3d.train_env(tmp_path / "results", nnUNet_anatomask_pretrain_epochs="2")
    run_cli(["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", "nnUNetTrainerAnatoMask",
             "-device", "cpu"], env)
    fold_dir = fold_folder(tmp_path / "results", demo3d.dataset_name, "nnUNetTrainerAnatoMask", "3d_fullres", 0)
    ckpt = check_stage1_outputs(fold_dir, "AnatoMask", 1)
    teacher = {k: v for k, v in ckpt["scheme_state"]["scheme"].items() if k.startswith("teacher.network.")}
    assert teacher.keys() == {"teacher.network." + k for k in ckpt["network_weights"]}
    log = ckpt["logging"]
    assert log["alpha"] == [0.0, 0.5] and log["teacher_momentum"][0] == pytest.approx(0.999)
    overlap = log["hard_fg_overlap"]  # logged once alpha > 0
    assert len(overlap) == 2 and np.isnan(overlap[0]) and 0.0 <= overlap[1] <= 1.0
    assert "teacher_error" in stage1_log_text(fold_dir)


def test_multichannel_anisotropic(aniso2ch, tmp_path):
    train_and_predict(aniso2ch, tmp_path, "nnUNetTrainerRandomMask", "3d_fullres", "RandomMask", channels=2)


def test_resenc_plans(resenc, tmp_path):
    train_and_predict(resenc, tmp_path, "nnUNetTrainerRandomMask", "3d_fullres", "RandomMask",
                      plans="nnUNetResEncUNetMPlans", predict=False)
