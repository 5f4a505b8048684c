"""The rest of the end-to-end matrix through the real CLIs (slow: run with `bash scripts/test.sh -m slow`):
RandomMask with stage 1 inside nnUNetv2_train, 2d plans, two channels with anisotropic spacing, ResEnc plans.
The default suite's shared run is in test_end_to_end.py."""
import os

import pytest

from tests.conftest import run_cli
from tests.trainers.helpers import fold_folder, stage2_log_text
from tests.trainers.test_end_to_end import check_predictions, check_stage1_outputs, predict

pytestmark = pytest.mark.slow


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


def test_randommask_3d_fullres(demo3d, tmp_path):
    train_and_predict(demo3d, tmp_path, "nnUNetTrainerRandomMask", "3d_fullres", "RandomMask")


def test_randommask_2d(demo3d, tmp_path):
    train_and_predict(demo3d, tmp_path, "nnUNetTrainerRandomMask", "2d", "RandomMask")


def test_multichannel_anisotropic(aniso2ch, tmp_path):
    train_and_predict(aniso2ch, tmp_path, "nnUNetTrainerRandomMask", "3d_fullres", "RandomMask", channels=2)


def test_resenc_plans(resenc, tmp_path):
    train_and_predict(resenc, tmp_path, "nnUNetTrainerRandomMask", "3d_fullres", "RandomMask",
                      plans="nnUNetResEncUNetMPlans", with_prediction=False)
