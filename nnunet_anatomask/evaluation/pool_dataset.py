"""The unlabelled pool of ``--size cpu-pool``: every real human brain scan found in installed packages, one
image-only nnU-Net raw dataset per scan (a pool *source*), each in many random deformations.

Nothing is downloaded: each source is looked up where its package puts it, and ``--list-sources`` says which are
missing and what to install. Which scans, and why some are left out:

| source | package | scan |
|---|---|---|
| colin27_t1_head | Debian ``mricron-data`` | ``ch2.nii.gz``: Colin27 T1 with skull, 1 mm |
| colin27_t1_brain | Debian ``mricron-data`` | ``ch2bet.nii.gz``: the same subject, brain extracted, 1 mm |
| colin27_t1_brain_05mm | Debian ``mricron-data`` | ``ch2better.nii.gz``: the same subject, 0.5 mm, another extraction |
| itk_kmeans_t1_head | Debian ``insighttoolkit5-examples`` | ``KmeansTest_T1UCharRaw.nii.gz``: another subject's T1 head, 2x2x3 mm |
| nibabel_anatomical_t1 | PyPI ``nibabel`` (also Debian ``python3-nibabel``) | ``tests/data/anatomical.nii``: another subject's T1, 2 mm |
| nibabel_example4d_epi | PyPI ``nibabel`` | ``tests/data/example4d.nii.gz``: an EPI head (first volume), 2x2x2.2 mm |
| dipy_aniso_vox_b0 | PyPI ``dipy`` | ``data/files/aniso_vox.nii.gz``: a head volume at 4x4x5 mm |

Left out: the MNI ICBM152 2009 template of nilearn (the labelled set's held-out *test* template; the pool must not
contain it), mricron-data's ``inia19-t1-brain`` (a macaque brain, not human), its atlases (label maps), nilearn's
``image_10426.nii.gz`` (a statistical map), nibabel's ``functional.nii`` (3 slices) and ``*_anat_moved.nii``
(``anatomical.nii`` resampled: the same scan again), dipy's ``S0_10slices.nii.gz`` (its header gives 53 mm between
slices, so its geometry cannot be trusted) and the ITK BrainWeb files (checksums only, no data).

Every source's channel is named by the size's ``channel_name`` ("MRI": the pool mixes T1, EPI and b0 contrasts;
nnU-Net z-scores every non-CT channel per image, whatever its name). Subjects are made as the labelled set's are
(``anatomy_synthesis.make_subject``: affine + elastic deformation, resampling to a jittered spacing, gamma, bias
field, Rician noise), without labels.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from nnunet_anatomask.evaluation.anatomy_dataset import _write
from nnunet_anatomask.evaluation.anatomy_labels import Template
from nnunet_anatomask.evaluation.anatomy_sources import MRICRON_DIRS
from nnunet_anatomask.evaluation.anatomy_synthesis import make_subject

ITK_DATA = "/usr/share/doc/insighttoolkit5-examples/examples/Data"


@dataclass(frozen=True)
class PoolSource:
    name: str
    install: str                      # what to install when it is missing
    locate: Callable[[], Optional[str]]
    note: str
    volume: int = 0                   # the volume of a 4D file


def _package_file(package: str, *parts: str) -> Optional[str]:
    """A file inside an installed Python package (the package is located, never imported)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(root, *parts)
        if os.path.isfile(path):
            return path
    return None


def _first_file(folders: Sequence[str], name: str) -> Optional[str]:
    return next((os.path.join(d, name) for d in folders if os.path.isfile(os.path.join(d, name))), None)


SOURCES = (
    PoolSource("colin27_t1_head", "apt-get install mricron-data", lambda: _first_file(MRICRON_DIRS, "ch2.nii.gz"),
               "Colin27 T1 with skull, 1 mm (mricron-data ch2.nii.gz; the labelled set's training subject)"),
    PoolSource("colin27_t1_brain", "apt-get install mricron-data",
               lambda: _first_file(MRICRON_DIRS, "ch2bet.nii.gz"),
               "Colin27 T1 brain, 1 mm (mricron-data ch2bet.nii.gz; the labelled set's training template)"),
    PoolSource("colin27_t1_brain_05mm", "apt-get install mricron-data",
               lambda: _first_file(MRICRON_DIRS, "ch2better.nii.gz"),
               "Colin27 T1 brain, 0.5 mm, another brain extraction (mricron-data ch2better.nii.gz)"),
    PoolSource("itk_kmeans_t1_head", "apt-get install insighttoolkit5-examples",
               lambda: _first_file([ITK_DATA], "KmeansTest_T1UCharRaw.nii.gz"),
               "another subject's T1 head, 2x2x3 mm (ITK's KmeansTest_T1UCharRaw.nii.gz)"),
    PoolSource("nibabel_anatomical_t1", "pip install nibabel",
               lambda: _package_file("nibabel", "tests", "data", "anatomical.nii"),
               "another subject's T1, 2 mm (nibabel's tests/data/anatomical.nii)"),
    PoolSource("nibabel_example4d_epi", "pip install nibabel",
               lambda: _package_file("nibabel", "tests", "data", "example4d.nii.gz"),
               "an EPI head, first volume, 2x2x2.2 mm (nibabel's tests/data/example4d.nii.gz)"),
    PoolSource("dipy_aniso_vox_b0", "pip install dipy",
               lambda: _package_file("dipy", "data", "files", "aniso_vox.nii.gz"),
               "a head volume, 4x4x5 mm (dipy's data/files/aniso_vox.nii.gz)"),
)


def available(sources: Optional[Sequence[PoolSource]] = None) -> tuple[list[tuple[PoolSource, str]],
                                                                       list[PoolSource]]:
    """([(source, its file)] found, [source] missing), of ``sources`` (default: every known source)."""
    found, missing = [], []
    for s in SOURCES if sources is None else sources:
        path = s.locate()
        (found.append((s, path)) if path else missing.append(s))
    return found, missing


def load_scan(path: str, volume: int = 0) -> Template:
    """A scan as an unlabelled template: float32 image (numpy order z, y, x), spacing, zero labels."""
    img = sitk.ReadImage(path)
    if img.GetDimension() == 4:  # a series: one volume
        size = list(img.GetSize())
        img = sitk.Extract(img, size[:3] + [0], [0, 0, 0, volume])
    image = sitk.GetArrayFromImage(img).astype(np.float32)
    image = np.clip(image - np.percentile(image, 1), 0, None)  # background at 0 (make_subject scales by the 99th)
    return Template(os.path.basename(path), image, np.zeros(image.shape, np.uint8),
                    tuple(float(s) for s in reversed(img.GetSpacing()[:3])), path, "no labels")


def cases_per_source(total: int, sources: int) -> list[int]:
    """``total`` cases spread over ``sources`` as evenly as possible (the first ones get one more)."""
    return [total // sources + (1 if i < total % sources else 0) for i in range(sources)]


def source_dataset(pool_id: int, index: int, name: str) -> tuple[int, str]:
    """(id, DatasetXXX_Name) of the index-th source: ids follow the pool's."""
    dataset_id = pool_id + 1 + index
    return dataset_id, f"Dataset{dataset_id:03d}_Pool{''.join(p.title() for p in name.split('_'))}"


def build_pool_sources(raw_root: str, pool_id: int, total_cases: int, spacing: float, channel_name: str,
                       seed: int = 0, log: Callable[[str], None] = print) -> dict:
    """One image-only raw dataset per source found; returns the provenance (also OUT/.../pool_provenance.json).
    Resumable: finished case files are kept; a folder built with other settings is refused."""
    found, missing = available()
    if not found:
        raise RuntimeError("No brain scan for the pool is installed. Fix: " + "; ".join(
            sorted({s.install for s in SOURCES})) + " (any of them).")
    settings = {"total_cases": total_cases, "spacing": spacing, "channel_name": channel_name, "seed": seed,
                "sources": [s.name for s, _ in found]}
    prov_path = os.path.join(raw_root, f"pool_{pool_id}_provenance.json")
    if os.path.isfile(prov_path):
        with open(prov_path) as f:
            old = json.load(f)
        if old["settings"] != json.loads(json.dumps(settings)):
            raise RuntimeError(f"{prov_path} records a pool built with other settings or other installed sources "
                               f"({old['settings']['sources']}). Fix: use another output folder, or reinstall the "
                               f"same packages.")
        if old.get("complete"):
            return old
    counts = cases_per_source(total_cases, len(found))
    provenance = {"settings": settings, "complete": False, "sources": {}, "missing": {
        s.name: f"not installed ({s.install})" for s in missing}}
    for index, ((source, path), n) in enumerate(zip(found, counts)):
        dataset_id, dataset = source_dataset(pool_id, index, source.name)
        folder = os.path.join(raw_root, dataset)
        os.makedirs(os.path.join(folder, "imagesTr"), exist_ok=True)
        template = load_scan(path, source.volume)
        log(f"pool source {dataset}: {n} deformations of {path} (shape {template.image.shape}, spacing "
            f"{tuple(round(s, 2) for s in template.spacing)})")
        for i in range(n):
            image_path = os.path.join(folder, "imagesTr", f"{source.name}_{i:03d}_0000.nii.gz")
            if not os.path.isfile(image_path):
                image, _, out_spacing = make_subject(template, spacing, np.random.default_rng([seed, dataset_id, i]))
                _write(image, image_path + ".tmp.nii.gz", out_spacing)
                os.replace(image_path + ".tmp.nii.gz", image_path)
        with open(os.path.join(folder, "dataset.json"), "w") as f:
            json.dump({"name": dataset, "channel_names": {"0": channel_name}, "labels": {"background": 0},
                       "numTraining": n, "file_ending": ".nii.gz",
                       "description": f"{n} random deformations of {source.note}; no labels"}, f, indent=2)
        provenance["sources"][source.name] = {"dataset_id": dataset_id, "dataset": dataset, "file": path,
                                              "cases": n, "note": source.note}
    provenance["complete"] = True
    with open(prov_path, "w") as f:
        json.dump(provenance, f, indent=2)
    return provenance


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m nnunet_anatomask.evaluation.pool_dataset",
                                description="List (or build) the unlabelled brain-scan pool sources found offline.")
    p.add_argument("--list-sources", action="store_true", help="print which sources are found and exit")
    p.add_argument("--raw", default=os.environ.get("nnUNet_raw"))
    p.add_argument("--pool-id", type=int, default=970)
    p.add_argument("--cases", type=int, default=96)
    p.add_argument("--spacing", type=float, default=4.0)
    a = p.parse_args(argv)
    found, missing = available()
    if a.list_sources or not a.raw:
        for s, path in found:
            print(f"found   {s.name}: {path}")
        for s in missing:
            print(f"missing {s.name}: {s.install}")
        return
    build_pool_sources(a.raw, a.pool_id, a.cases, a.spacing, "MRI")


if __name__ == "__main__":
    main()
