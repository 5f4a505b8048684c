"""nnUNetv2_plan_and_preprocess_unlabelled names a bad case before anything is written (unlabelled/checks.py):
NaN and Inf voxels, and image files that do not match dataset.json's channels. NaN/Inf pools are written as
.nrrd: SimpleITK reads NaN and Inf in a NIfTI file as 0, so a .nii.gz pool cannot hold them for nnU-Net's reader."""
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_anatomask.example_data import make_example_dataset
from nnunet_anatomask.unlabelled.cli import main
from tests.conftest import clean_env, run_cli


def pool_with(raw: str, dataset_id: int, bad_value: float) -> str:
    """A 3-case image-only pool in .nrrd whose case_001 holds one ``bad_value`` voxel."""
    folder = make_example_dataset(raw, dataset_id, "Pool", num_train=3, num_test=0, shape=(8, 8, 8),
                                  images_only=True)
    images = os.path.join(folder, "imagesTr")
    for name in os.listdir(images):
        image = sitk.ReadImage(os.path.join(images, name))
        array = sitk.GetArrayFromImage(image).astype(np.float32)
        if name.startswith("case_001"):
            array[2, 3, 4] = bad_value
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(image)
        sitk.WriteImage(out, os.path.join(images, name.replace(".nii.gz", ".nrrd")))
        os.remove(os.path.join(images, name))
    with open(os.path.join(folder, "dataset.json")) as f:
        dataset_json = json.load(f)
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump({**dataset_json, "file_ending": ".nrrd"}, f)
    return folder


def paths(tmp_path) -> dict:
    return {"nnUNet_raw": str(tmp_path / "raw"), "nnUNet_preprocessed": str(tmp_path / "preprocessed"),
            "nnUNet_results": str(tmp_path / "results")}


def test_nan_voxels_named_through_the_cli_before_anything_is_written(tmp_path):
    pool_with(str(tmp_path / "raw"), 611, np.nan)
    proc = run_cli(["nnUNetv2_plan_and_preprocess_unlabelled", "-d", 611, "-c", "3d_fullres", "-np", 1, "-npfp", 1],
                   clean_env(**paths(tmp_path)), timeout=300, check=False)
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("nnUNetv2_plan_and_preprocess_unlabelled: NaN or Inf voxels in case_001_0000.nrrd (1 "
                              "NaN, 0 Inf)") and "Fix: replace those voxels" in message
    assert not (tmp_path / "preprocessed").exists()


def test_inf_voxels_and_a_channel_mismatch_are_named(tmp_path, monkeypatch):
    for name, value in paths(tmp_path).items():
        monkeypatch.setenv(name, value)
    pool_with(str(tmp_path / "raw"), 612, np.inf)
    with pytest.raises(SystemExit, match=r"NaN or Inf voxels in case_001_0000.nrrd \(0 NaN, 1 Inf\)"):
        main(["-d", "612", "-c", "3d_fullres", "-np", "1", "-npfp", "1"])

    folder = make_example_dataset(str(tmp_path / "raw"), 613, "TwoListed", num_train=2, num_test=0,
                                  shape=(8, 8, 8), images_only=True)
    with open(os.path.join(folder, "dataset.json")) as f:
        dataset_json = json.load(f)
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump({**dataset_json, "channel_names": {"0": "T1", "1": "T2"}}, f)
    with pytest.raises(SystemExit, match=r"Case case_000 has the image files \['case_000_0000.nii.gz'\], but "
                                         r"dataset.json lists 2 channels \(T1, T2\), so each case needs "
                                         r"\['case_000_0000.nii.gz', 'case_000_0001.nii.gz'\]. Fix: "):
        main(["-d", "613", "-c", "3d_fullres", "-np", "1", "-npfp", "1"])
    assert not (tmp_path / "preprocessed").exists()
