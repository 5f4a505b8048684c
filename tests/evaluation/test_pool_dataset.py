"""The cpu-pool's sources: generated scans in the default suite (CI has none of the packages); the installed real
scans where they are (each test skips with the package to install)."""
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_anatomask.evaluation import pool_dataset as pd


def write_scan(path, shape, spacing, volumes=0):
    """A blob of intensity 100..200 in a dark field; with volumes > 0 a 4D series."""
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    image = np.where(z ** 2 + y ** 2 + x ** 2 < 0.6, 150 + 50 * x, 5).astype(np.float32)
    img = sitk.JoinSeries([sitk.GetImageFromArray(image * (1 + v)) for v in range(volumes)]) if volumes else \
        sitk.GetImageFromArray(image)
    img.SetSpacing(tuple(reversed(spacing)) + ((2.0,) if volumes else ()))
    sitk.WriteImage(img, str(path))
    return str(path)


def test_cases_are_spread_over_the_sources_and_numbered_after_the_pool():
    assert pd.cases_per_source(96, 7) == [14, 14, 14, 14, 14, 13, 13] and sum(pd.cases_per_source(10, 3)) == 10
    assert pd.source_dataset(970, 0, "itk_kmeans_t1_head") == (971, "Dataset971_PoolItkKmeansT1Head")


def test_a_4d_series_gives_its_first_volume_and_spacing(tmp_path):
    t = pd.load_scan(write_scan(tmp_path / "epi.nii.gz", (6, 10, 12), (2.2, 2.0, 2.0), volumes=2))
    assert t.image.shape == (6, 10, 12) and t.spacing == pytest.approx((2.2, 2.0, 2.0))
    assert t.image.min() == 0 and t.labels.max() == 0  # background at 0, no labels


def test_build_writes_one_image_only_source_per_scan_and_records_what_is_missing(tmp_path, monkeypatch):
    scans = {"a": write_scan(tmp_path / "a.nii.gz", (20, 24, 24), (1.0, 1.0, 1.0)),
             "b": write_scan(tmp_path / "b.nii.gz", (10, 12, 12), (3.0, 2.0, 2.0))}
    monkeypatch.setattr(pd, "SOURCES", (
        pd.PoolSource("scan_a", "pip install a", lambda: scans["a"], "scan a"),
        pd.PoolSource("scan_b", "apt-get install b", lambda: scans["b"], "scan b"),
        pd.PoolSource("scan_c", "pip install c", lambda: None, "not installed")))
    raw = tmp_path / "raw"
    prov = pd.build_pool_sources(str(raw), 970, 5, 4.0, "MRI", log=lambda m: None)
    assert prov["complete"] and prov["missing"] == {"scan_c": "not installed (pip install c)"}
    assert [(s["dataset"], s["cases"]) for s in prov["sources"].values()] == [
        ("Dataset971_PoolScanA", 3), ("Dataset972_PoolScanB", 2)]
    dataset_json = json.loads((raw / "Dataset972_PoolScanB" / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "MRI"} and dataset_json["labels"] == {"background": 0}
    assert sorted(os.listdir(raw / "Dataset972_PoolScanB" / "imagesTr")) == ["scan_b_000_0000.nii.gz",
                                                                            "scan_b_001_0000.nii.gz"]
    assert not (raw / "Dataset972_PoolScanB" / "labelsTr").exists()
    spacing = sitk.ReadImage(str(raw / "Dataset971_PoolScanA" / "imagesTr" / "scan_a_000_0000.nii.gz")).GetSpacing()
    assert all(3.5 < s < 6.5 for s in spacing)  # resampled to the size's 4 mm, jittered, one axis thicker
    with pytest.raises(RuntimeError, match="other settings or other installed sources"):
        pd.build_pool_sources(str(raw), 970, 6, 4.0, "MRI", log=lambda m: None)


@pytest.mark.parametrize("source", pd.SOURCES, ids=lambda s: s.name)
def test_installed_scans_load(source):
    """Each real scan, where its package is installed, loads as a 3D volume with a brain-sized extent."""
    path = source.locate()
    if path is None:
        pytest.skip(f"{source.name} not installed ({source.install})")
    t = pd.load_scan(path, source.volume)
    extent = np.asarray(t.image.shape) * np.asarray(t.spacing)
    assert t.image.ndim == 3 and (extent > 40).all() and (extent < 300).all(), (t.image.shape, t.spacing)
    assert np.percentile(t.image, 99) > 0


def test_the_held_out_test_template_is_no_source():
    assert not any("icbm" in s.name.lower() or "mni" in s.name.lower() for s in pd.SOURCES)
    assert not any(path and "icbm152" in path for path in (s.locate() for s in pd.SOURCES))
