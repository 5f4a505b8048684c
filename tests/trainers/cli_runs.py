"""The real-CLI runs that end-to-end tests share: train (stage 1 + stage 2 in one nnUNetv2_train call), predict,
and the checks of what a stage-1 run and a prediction leave behind."""
import json
import os
import signal
import subprocess
import time

import numpy as np
import SimpleITK as sitk

from tests.conftest import run_cli
from tests.trainers.helpers import fold_folder, load_weights_only, stage1_log_text, stage2_log_text

RESULT_KEYS = {"network_weights", "scheme", "scheme_state", "optimizer_state", "grad_scaler_state", "current_epoch",
               "logging", "init_args", "trainer_name", "plans_name", "plans_hash", "configuration", "patch_size",
               "input_channels", "architecture"}


def check_stage1_outputs(fold_dir: str, scheme: str, channels: int = 1) -> dict:
    """What every stage-1 run leaves: weights_only checkpoint with our keys, pictures, progress, summary."""
    pre = os.path.join(fold_dir, "pretraining")
    ckpt = load_weights_only(os.path.join(pre, "checkpoint_final.pth"))
    assert RESULT_KEYS <= set(ckpt), RESULT_KEYS - set(ckpt)
    assert ckpt["scheme"] == scheme and ckpt["input_channels"] == channels
    assert not any(k.startswith("teacher") for k in ckpt["network_weights"])
    assert not os.path.isfile(os.path.join(pre, "checkpoint_latest.pth"))  # only final is kept
    assert os.path.isfile(os.path.join(pre, "progress.png"))
    assert [f for f in os.listdir(pre) if f.startswith("reconstruction_epoch_")]
    summary = json.load(open(os.path.join(pre, "summary.json")))
    assert summary["scheme"] == scheme and np.isfinite(summary["final_loss"]) and "masked cells" in summary[
        "final_loss_is"]
    assert summary["checkpoint"].endswith("checkpoint_final.pth")
    assert "Epoch 0 (stage 1: " in stage1_log_text(fold_dir)
    return ckpt


def check_predictions(planned, out, channels: int = 1) -> None:
    preds = sorted(p for p in os.listdir(out) if p.endswith(".nii.gz"))
    assert len(preds) == len(os.listdir(planned.images_ts())) // channels
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out / preds[0])))
    assert set(np.unique(seg)) <= {0, 1}


def predict(planned, results, out, trainer: str, config: str = "3d_fullres", plans: str = "nnUNetPlans") -> None:
    run_cli(["nnUNetv2_predict", "-i", planned.images_ts(), "-o", out, "-d", planned.dataset_id, "-c", config,
             "-f", 0, "-tr", trainer, "-p", plans, "-device", "cpu", "-npp", 1, "-nps", 1],
            planned.env(str(results)))



def train_and_predict(planned, tmp_path, trainer: str, config: str, scheme: str, channels: int = 1,
                      plans: str = "nnUNetPlans", with_prediction: bool = True) -> str:
    """nnUNetv2_train with no stage-1 checkpoint around: stage 1 and stage 2 in one call, then predict."""
    results = tmp_path / "results"
    run_cli(["nnUNetv2_train", planned.dataset_id, config, 0, "-tr", trainer, "-p", plans, "-device", "cpu"],
            planned.train_env(results))
    fold_dir = fold_folder(results, planned.dataset_name, trainer, config, 0, plans)
    check_stage1_outputs(fold_dir, scheme, channels)
    log2 = stage2_log_text(fold_dir)
    assert "No stage-1 checkpoint found: running stage 1 now" in log2 and "Stage 2 starts from the stage-1" in log2
    assert os.path.isfile(os.path.join(fold_dir, "checkpoint_final.pth"))
    assert os.path.isfile(os.path.join(fold_dir, "validation", "summary.json"))
    if with_prediction:
        out = tmp_path / "pred"
        predict(planned, results, out, trainer, config, plans)
        check_predictions(planned, out, channels)
    return fold_dir


def kill_after_epoch(cmd: list, env: dict, latest: str, epoch: int) -> None:
    """Start cmd, SIGKILL its process group once checkpoint_latest.pth has reached `epoch`."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        if os.path.isfile(latest) and load_weights_only(latest)["current_epoch"] >= epoch:
            break
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
