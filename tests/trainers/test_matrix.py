"""The rest of the end-to-end matrix through the real CLIs (slow: run with `bash scripts/test.sh -m slow`):
RandomMask with stage 1 inside nnUNetv2_train, 2d plans, two channels with anisotropic spacing, ResEnc plans.
The default suite's shared run is in test_end_to_end.py."""
import pytest

from tests.trainers.cli_runs import train_and_predict

pytestmark = pytest.mark.slow


def test_randommask_3d_fullres(demo3d, tmp_path):
    train_and_predict(demo3d, tmp_path, "nnUNetTrainerRandomMask", "3d_fullres", "RandomMask")


def test_randommask_2d(demo3d, tmp_path):
    train_and_predict(demo3d, tmp_path, "nnUNetTrainerRandomMask", "2d", "RandomMask")


def test_multichannel_anisotropic(aniso2ch, tmp_path):
    train_and_predict(aniso2ch, tmp_path, "nnUNetTrainerRandomMask", "3d_fullres", "RandomMask", channels=2)


def test_resenc_plans(resenc, tmp_path):
    train_and_predict(resenc, tmp_path, "nnUNetTrainerRandomMask", "3d_fullres", "RandomMask",
                      plans="nnUNetResEncUNetMPlans", with_prediction=False)
