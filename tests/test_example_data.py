"""Tests for nnunet_anatomask.example_data: tiny nnU-Net v2 raw datasets."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_anatomask.example_data import main, make_example_dataset, write_zero_labels

SMALL = dict(num_train=3, num_test=1, shape=(10, 16, 16))


def read(path: str) -> np.ndarray:
    """A NIfTI file as a numpy (z, y, x) array."""
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


def case_arrays(folder: str, case: str, channels: int, split: str = "Tr"):
    """Images [C, ...] and label of one case."""
    images = np.stack([read(os.path.join(folder, f"images{split}", f"{case}_{c:04d}.nii.gz"))
                       for c in range(channels)])
    return images, read(os.path.join(folder, f"labels{split}", f"{case}.nii.gz"))


def test_layout_and_dataset_json(tmp_path):
    folder = make_example_dataset(str(tmp_path), 990, "Demo", num_channels=2, **SMALL)
    assert folder == os.path.join(str(tmp_path), "Dataset990_Demo")
    assert sorted(os.listdir(os.path.join(folder, "imagesTr"))) == [
        f"case_{i:03d}_{c:04d}.nii.gz" for i in range(3) for c in range(2)]
    assert sorted(os.listdir(os.path.join(folder, "labelsTr"))) == [f"case_{i:03d}.nii.gz" for i in range(3)]
    assert sorted(os.listdir(os.path.join(folder, "imagesTs"))) == ["case_003_0000.nii.gz", "case_003_0001.nii.gz"]
    assert os.listdir(os.path.join(folder, "labelsTs")) == ["case_003.nii.gz"]
    with open(os.path.join(folder, "dataset.json")) as f:
        ds = json.load(f)
    assert ds["channel_names"] == {"0": "MRI", "1": "MRI2"}
    assert ds["labels"] == {"background": 0, "structure": 1}
    assert ds["numTraining"] == 3 and ds["file_ending"] == ".nii.gz"


def test_nnunet_accepts_dataset(tmp_path):
    """nnU-Net's own integrity check (geometry, labels, file names) passes."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    folder = make_example_dataset(str(tmp_path), 991, "Check", num_channels=2, **SMALL)
    verify_dataset_integrity(folder, num_processes=1)


def test_content_labels_and_contrast(tmp_path):
    folder = make_example_dataset(str(tmp_path), num_channels=2, **SMALL)
    for i in range(3):
        images, label = case_arrays(folder, f"case_{i:03d}", 2)
        assert images.dtype == np.float32 and images.shape == (2, 10, 16, 16)
        assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1}
        fg, bg = label == 1, label == 0
        assert images[0][fg].mean() > images[0][bg].mean()  # structure bright in channel 0
        assert images[1][fg].mean() < images[1][bg].mean()  # ... and dark in channel 1
        assert images[0][bg].std() > 1.0  # background is not flat


def test_deterministic_from_seed(tmp_path):
    a = make_example_dataset(str(tmp_path / "a"), seed=3, **SMALL)
    b = make_example_dataset(str(tmp_path / "b"), seed=3, **SMALL)
    c = make_example_dataset(str(tmp_path / "c"), seed=4, **SMALL)
    for case in ("case_000", "case_002"):
        ia, la = case_arrays(a, case, 1)
        ib, lb = case_arrays(b, case, 1)
        ic, _ = case_arrays(c, case, 1)
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)
        assert not np.array_equal(ia, ic)
    assert not np.array_equal(case_arrays(a, "case_000", 1)[0], case_arrays(a, "case_001", 1)[0])


def test_labels_zero(tmp_path):
    folder = make_example_dataset(str(tmp_path), labels_zero=True, **SMALL)
    for split, case in (("Tr", "case_000"), ("Tr", "case_002"), ("Ts", "case_003")):
        assert not read(os.path.join(folder, f"labels{split}", f"{case}.nii.gz")).any()


def test_anisotropic_spacing(tmp_path):
    folder = make_example_dataset(str(tmp_path), shape=(8, 16, 12), spacing=(3.0, 1.0, 0.5),
                                  num_train=2, num_test=0)
    for path in (os.path.join(folder, "imagesTr", "case_000_0000.nii.gz"),
                 os.path.join(folder, "labelsTr", "case_000.nii.gz")):
        img = sitk.ReadImage(path)
        assert img.GetSpacing() == pytest.approx((0.5, 1.0, 3.0))  # SimpleITK order x, y, z
        assert sitk.GetArrayFromImage(img).shape == (8, 16, 12)  # numpy order z, y, x
    assert read(os.path.join(folder, "labelsTr", "case_001.nii.gz")).any()


def test_2d_shape(tmp_path):
    folder = make_example_dataset(str(tmp_path), shape=(24, 24), spacing=(1.0, 1.0), num_train=2, num_test=0)
    images, label = case_arrays(folder, "case_000", 1)
    assert images.shape == (1, 24, 24) and label.any()


def test_write_zero_labels(tmp_path):
    folder = make_example_dataset(str(tmp_path), num_channels=2, spacing=(2.0, 1.0, 1.0), **SMALL)
    labels = os.path.join(folder, "labelsTr")
    for f in os.listdir(labels):
        os.remove(os.path.join(labels, f))
    assert write_zero_labels(folder) == 3
    ref = sitk.ReadImage(os.path.join(folder, "imagesTr", "case_001_0000.nii.gz"))
    lab = sitk.ReadImage(os.path.join(labels, "case_001.nii.gz"))
    assert sorted(os.listdir(labels)) == [f"case_{i:03d}.nii.gz" for i in range(3)]
    assert lab.GetSize() == ref.GetSize() and lab.GetSpacing() == ref.GetSpacing()
    assert lab.GetOrigin() == ref.GetOrigin() and lab.GetDirection() == ref.GetDirection()
    assert not sitk.GetArrayFromImage(lab).any()
    assert write_zero_labels(folder) == 0  # existing labels are kept
    assert write_zero_labels(folder, overwrite=True) == 3


def test_write_zero_labels_keeps_real_labels(tmp_path):
    folder = make_example_dataset(str(tmp_path), **SMALL)
    os.remove(os.path.join(folder, "labelsTr", "case_000.nii.gz"))
    assert write_zero_labels(folder) == 1
    assert read(os.path.join(folder, "labelsTr", "case_001.nii.gz")).any()


def test_write_zero_labels_without_images(tmp_path):
    with pytest.raises(FileNotFoundError, match="imagesTr"):
        write_zero_labels(str(tmp_path))


def test_cli(tmp_path, capsys):
    folder = main(["--raw", str(tmp_path), "--id", "7", "--channels", "2", "--spacing", "3", "1", "1",
                   "--shape", "8", "12", "12", "--num-train", "2", "--num-test", "0"])
    assert folder.endswith("Dataset007_AnatoMaskDemo") and folder in capsys.readouterr().out
    img = sitk.ReadImage(os.path.join(folder, "imagesTr", "case_001_0001.nii.gz"))
    assert img.GetSpacing() == pytest.approx((1.0, 1.0, 3.0))


def test_lesions_are_planted_on_top_of_the_default_case(tmp_path):
    """Catches: lesion draws that shift the default random stream (the default data would change), lesions
    that are not labelled 2, not small, or not the brightest voxels of channel 0 (dark in channel 1)."""
    plain = make_example_dataset(str(tmp_path / "plain"), num_channels=2, **SMALL)
    planted = make_example_dataset(str(tmp_path / "lesions"), num_channels=2, lesions=3, **SMALL)
    with open(os.path.join(planted, "dataset.json")) as f:
        assert json.load(f)["labels"] == {"background": 0, "structure": 1, "lesion": 2}
    for i in range(3):
        images, label = case_arrays(plain, f"case_{i:03d}", 2)
        images_l, label_l = case_arrays(planted, f"case_{i:03d}", 2)
        lesion = label_l == 2
        assert 0 < lesion.sum() <= 3 * 4 / 3 * np.pi * 3.0 ** 3
        np.testing.assert_array_equal(images_l[:, ~lesion], images[:, ~lesion])
        np.testing.assert_array_equal(label_l[~lesion], label[~lesion])
        assert images_l[0][lesion].min() > images_l[0][~lesion].max()
        assert images_l[1][lesion].mean() < images_l[1][~lesion].mean()


def test_negative_lesions_rejected(tmp_path):
    with pytest.raises(ValueError, match="lesions must be >= 0"):
        make_example_dataset(str(tmp_path), lesions=-1, **SMALL)


def test_images_only_writes_the_same_images_and_no_labels(tmp_path):
    """An unlabelled pool: the labelled dataset's images (same seed), no label folders, background label only."""
    labelled = make_example_dataset(str(tmp_path / "a"), 990, "Demo", **SMALL)
    pool = make_example_dataset(str(tmp_path / "b"), 990, "Demo", images_only=True, **SMALL)
    assert sorted(os.listdir(pool)) == ["dataset.json", "imagesTr", "imagesTs"]
    assert sorted(os.listdir(os.path.join(pool, "imagesTr"))) == sorted(os.listdir(os.path.join(labelled, "imagesTr")))
    assert np.array_equal(read(os.path.join(pool, "imagesTr", "case_000_0000.nii.gz")),
                          read(os.path.join(labelled, "imagesTr", "case_000_0000.nii.gz")))
    with open(os.path.join(pool, "dataset.json")) as f:
        assert json.load(f)["labels"] == {"background": 0}


def test_ct_like_cases_hold_every_tissue_at_its_hounsfield_units(tmp_path):
    """--ct: one channel named CT (nnU-Net then uses CTNormalization), air / fat / muscle / organ / bone at their HU,
    and every lesion voxel inside the organ region, 20-60 HU (plus noise) away from the organ's level."""
    from nnunet_anatomask import example_ct
    folder = make_example_dataset(str(tmp_path), 994, "CT", num_train=2, num_test=0, shape=(24, 32, 32),
                                  lesions=3, ct=True)
    with open(os.path.join(folder, "dataset.json")) as f:
        ds = json.load(f)
    assert ds["channel_names"] == {"0": "CT"} and ds["labels"] == {"background": 0, "organ": 1, "lesion": 2}
    for case in ("case_000", "case_001"):
        image, label = case_arrays(folder, case, 1)
        image = image[0]
        assert set(np.unique(label)) == {0, 1, 2}
        noise = 4 * example_ct.NOISE_HU
        assert (image < -1000 + noise).any()                                      # air
        assert ((image > -130 - noise) & (image < -70 + noise)).mean() > 0.02      # fat
        assert (image > 400 - noise).any()                                        # bone
        organ_level = np.median(image[label == 1])
        assert 55 - noise / 4 < organ_level < 65 + noise / 4
        lesion = label == 2
        assert np.mean(np.abs(image[lesion] - organ_level)) > 15                   # hyper- or hypodense
        assert np.abs(image[lesion] - organ_level).max() < 60 + noise


def test_ct_option_refuses_several_channels_or_2d(tmp_path):
    with pytest.raises(ValueError, match="one channel and three axes"):
        make_example_dataset(str(tmp_path), ct=True, num_channels=2, **SMALL)
    with pytest.raises(ValueError, match="one channel and three axes"):
        make_example_dataset(str(tmp_path), ct=True, shape=(32, 32), spacing=(1.0, 1.0))


def test_ct_dataset_plans_with_ct_normalization(tmp_path, monkeypatch):
    """nnU-Net's own fingerprint and planner on the CT-like data: CTNormalization, foreground statistics from the
    organ and lesions (so air and fat fall below the 0.5 percentile, bone above the 99.5 percentile)."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    monkeypatch.setenv("nnUNet_raw", str(raw))
    monkeypatch.setenv("nnUNet_preprocessed", str(pre))
    make_example_dataset(str(raw), 994, "CT", num_train=2, num_test=0, shape=(16, 24, 24), lesions=2, ct=True)
    import nnunetv2.paths
    monkeypatch.setattr(nnunetv2.paths, "nnUNet_raw", str(raw))
    monkeypatch.setattr(nnunetv2.paths, "nnUNet_preprocessed", str(pre))
    extract_fingerprints([994], num_processes=1)
    plan_experiments([994])
    with open(pre / "Dataset994_CT" / "nnUNetPlans.json") as f:
        plans = json.load(f)
    assert plans["configurations"]["3d_fullres"]["normalization_schemes"] == ["CTNormalization"]
    props = plans["foreground_intensity_properties_per_channel"]["0"]
    assert -60 < props["percentile_00_5"] < 40 and 80 < props["percentile_99_5"] < 180
