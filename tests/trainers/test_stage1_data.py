"""Stage-1 batches from nnU-Net's own loader: the plans' patch by default, larger crops when a scheme asks."""
import pytest

from nnunet_anatomask.trainers.registry import nnUNetTrainerRandomMask
from nnunet_anatomask.trainers.stage1_data import crop_size, initial_crop_size, shutdown, stage1_batches
from tests.trainers.helpers import make_trainer


@pytest.fixture
def trainer(demo3d, monkeypatch, tmp_path):
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    trainer = make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path)
    trainer.initialize()
    return trainer


def test_default_crop_is_the_plans_patch_and_nnunets_initial_size(trainer):
    patch = tuple(trainer.configuration_manager.patch_size)
    rotation, dummy_2d, initial, _ = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert list(initial_crop_size(patch, rotation, dummy_2d)) == list(initial)  # nnU-Net's rule, reproduced
    batches = stage1_batches(trainer)
    try:
        assert tuple(next(batches)["data"].shape[2:]) == patch
    finally:
        shutdown(batches)


def test_larger_crops_on_request(trainer):
    patch = tuple(trainer.configuration_manager.patch_size)
    crop = crop_size(patch, 5 / 3)
    assert crop == tuple(round(p * 5 / 3) for p in patch)
    batches = stage1_batches(trainer, 5 / 3)
    try:
        data = next(batches)["data"]
    finally:
        shutdown(batches)
    assert tuple(data.shape) == (trainer.batch_size, 1, *crop)
    assert data.std() > 0


def test_crop_scale_below_one_is_refused():
    with pytest.raises(ValueError, match="crop_scale must be >= 1"):
        crop_size((32, 32, 32), 0.5)
