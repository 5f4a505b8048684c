"""nnUNetv2_plan_and_preprocess_unlabelled in-process on a tiny image-only pool: the fingerprint without labels,
nnU-Net's plans, preprocessed cases without labels, and stage 1 on them (the real-CLI sequence pool -> target is
test_pool_sequence.py, slow)."""
import json
import os
import pickle

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_anatomask.example_data import make_example_dataset
from nnunet_anatomask.trainers.registry import nnUNetTrainerRandomMask
from nnunet_anatomask.unlabelled.cli import PoolError, check_image_only, plan_and_preprocess_unlabelled
from nnunet_anatomask.unlabelled.fingerprint import INTENSITY_REGION
from tests.trainers.helpers import load_weights_only

POOL = 601


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    paths = {"nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
             "nnUNet_results": str(root / "results")}
    make_example_dataset(paths["nnUNet_raw"], POOL, "Pool", num_train=4, num_test=0, images_only=True)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in paths.items():
            mp.setenv(k, v)
        plans_name = plan_and_preprocess_unlabelled(POOL, ["3d_fullres"], processes=[1], fingerprint_processes=1)
    return {"paths": paths, "plans_name": plans_name,
            "folder": os.path.join(paths["nnUNet_preprocessed"], "Dataset601_Pool")}


def test_fingerprint_statistics_come_from_the_images_inside_the_nonzero_mask(pool):
    """The synthetic images are positive everywhere, so the nonzero mask is the whole image: the statistics are
    those of every voxel (nnU-Net samples 10e7 / cases voxels per case with replacement: up to sampling error)."""
    with open(os.path.join(pool["folder"], "dataset_fingerprint.json")) as f:
        fingerprint = json.load(f)
    assert fingerprint["intensity_statistics_region"] == INTENSITY_REGION
    images = os.path.join(pool["paths"]["nnUNet_raw"], "Dataset601_Pool", "imagesTr")
    voxels = np.concatenate([sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(images, f))).ravel()
                             for f in sorted(os.listdir(images))])
    stats = fingerprint["foreground_intensity_properties_per_channel"]["0"]
    assert stats["mean"] == pytest.approx(voxels.mean(), rel=1e-2)
    assert stats["std"] == pytest.approx(voxels.std(), rel=2e-2)
    assert stats["min"] >= voxels.min() and stats["max"] <= voxels.max()
    assert fingerprint["spacings"] == [[1.0, 1.0, 1.0]] * 4 and fingerprint["shapes_after_crop"] == [[32, 32, 32]] * 4


def test_plans_and_preprocessed_cases_hold_no_labels(pool):
    assert pool["plans_name"] == "nnUNetPlans"
    assert os.path.isfile(os.path.join(pool["folder"], "nnUNetPlans.json"))
    data = os.path.join(pool["folder"], "nnUNetPlans_3d_fullres")
    assert sorted(f for f in os.listdir(data) if f.endswith(".pkl")) == [f"case_{i:03d}.pkl" for i in range(4)]
    with open(os.path.join(data, "case_000.pkl"), "rb") as f:
        properties = pickle.load(f)
    assert properties["class_locations"] == {}  # no foreground locations: nothing to oversample
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    _, seg, _, _ = nnUNetDatasetBlosc2(data).load_case("case_000")
    assert set(np.unique(np.asarray(seg)).tolist()) <= {-1, 0}  # nnU-Net's nonzero marker, never a label
    assert not os.path.isdir(os.path.join(pool["folder"], "gt_segmentations"))


def test_stage1_runs_on_the_pool(pool, monkeypatch):
    """nnUNetv2_pretrain POOL 3d_fullres all as the CLI builds it (in-process, 1 epoch x 1 iteration)."""
    for k, v in {**pool["paths"], "nnUNet_anatomask_pretrain_epochs": "1", "nnUNet_anatomask_iters_per_epoch": "1",
                 "nnUNet_n_proc_DA": "0"}.items():
        monkeypatch.setenv(k, v)
    with open(os.path.join(pool["folder"], "nnUNetPlans.json")) as f:
        plans = dict(json.load(f), continue_training=False)
    with open(os.path.join(pool["folder"], "dataset.json")) as f:
        dataset_json = json.load(f)
    trainer = nnUNetTrainerRandomMask(plans=plans, configuration="3d_fullres", fold="all",
                                      dataset_json=dataset_json, device=torch.device("cpu"))
    ckpt = load_weights_only(trainer.run_pretraining())
    assert ckpt["current_epoch"] == 1 and ckpt["init_args"]["plans"]["dataset_name"] == "Dataset601_Pool"


def test_bad_pools_name_the_fix(tmp_path):
    labelled = make_example_dataset(str(tmp_path), 603, "Labelled", num_train=1, num_test=0, shape=(8, 8, 8))
    with pytest.raises(PoolError, match="has labels in .*Fix: plan a labelled dataset with nnU-Net's own"):
        check_image_only(labelled)
    pool = make_example_dataset(str(tmp_path), 604, "Pool", num_train=1, num_test=0, shape=(8, 8, 8),
                                images_only=True)
    with open(os.path.join(pool, "dataset.json")) as f:
        dataset_json = json.load(f)
    del dataset_json["labels"]
    with open(os.path.join(pool, "dataset.json"), "w") as f:
        json.dump(dataset_json, f)
    with pytest.raises(PoolError, match=r'has no labels\. Fix: .*"labels": \{"background": 0\}'):
        check_image_only(pool)
