"""Tiny synthetic nnU-Net v2 raw datasets for the README demo and the tests.

A generated dataset looks like this::

    <raw_root>/Dataset990_AnatoMaskDemo/
        dataset.json
        imagesTr/case_000_0000.nii.gz  (one file per channel: _0000, _0001, ...)
        labelsTr/case_000.nii.gz
        imagesTs/case_006_0000.nii.gz
        labelsTs/case_006.nii.gz

Each case is a smooth random "tissue" background, one or two small bright
ellipsoids (the "structure", label 1) and mild Gaussian noise. Channel ``c`` is a
different monotone contrast of the same anatomy (e.g. the structure is bright in
channel 0 and dark in channel 1). Channel names are MRI-like, so nnU-Net uses
z-score normalisation.

``lesions=K`` (``--lesions K``) also plants K small, very bright spheres per case
(radius 1.5-3 voxels of the finest spacing; label 2, "lesion"), for schemes that
look for lesion-like cells (AMLP, docs/amlp.md). They are drawn after everything
else, so ``lesions=0`` (the default) writes exactly the files it always did.

``ct=True`` (``--ct``) writes CT-like cases instead (``example_ct.py``): air, fat,
muscle, a bone rod and an organ (label 1) at realistic Hounsfield units, one
channel named "CT" (so nnU-Net normalises with CTNormalization), and ``lesions``
small lesions of +-20..60 HU inside the organ (label 2).

Axis order: ``shape`` and ``spacing`` are given in numpy order ``(z, y, x)``,
exactly as nnU-Net reports them in its plans. SimpleITK stores spacing in
``(x, y, z)`` order, so it is reversed when the files are written.

CLI::

    python -m nnunet_anatomask.example_data --raw DIR --id 990 [--channels 2] \
        [--spacing 3 1 1] [--shape 16 32 32] [--lesions 3] [--ct]
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from nnunet_anatomask.example_ct import make_ct_case

LABELS = {"background": 0, "structure": 1}
CT_LABELS = {"background": 0, "organ": 1, "lesion": 2}
LESION_LABEL = 2
LESION_RADIUS_VOXELS = (1.5, 3.0)  # lesions are smaller than the structure (3-6 voxels)
LESION_CONTRAST = 300.0  # added to even channels, subtracted from odd ones: brighter than any tissue


def _channel_names(num_channels: int) -> dict[str, str]:
    """nnU-Net channel names: "MRI", "MRI2", ... (non-CT, so z-score normalisation)."""
    return {str(c): "MRI" if c == 0 else f"MRI{c + 1}" for c in range(num_channels)}


def _coords_mm(shape: Sequence[int], spacing: Sequence[float]) -> list[np.ndarray]:
    """Physical coordinates (mm) of every voxel, one broadcastable array per axis."""
    return [np.arange(n, dtype=np.float64).reshape([-1 if i == a else 1 for i in range(len(shape))]) * s
            for a, (n, s) in enumerate(zip(shape, spacing))]


def _smooth_background(rng: np.random.Generator, coords: list[np.ndarray],
                       extent: np.ndarray) -> np.ndarray:
    """Low-frequency random field in [0, 1]: a sum of a few wide random Gaussians."""
    field = np.zeros(np.broadcast_shapes(*(c.shape for c in coords)))
    for i in range(int(rng.integers(5, 9))):
        centre = rng.uniform(0, 1, len(coords)) * extent
        wide = i < 3  # a few wide blobs for the overall shading, then smaller "organs"
        sigma = rng.uniform(0.25, 0.45) * extent.max() if wide else rng.uniform(0.08, 0.16) * extent.max()
        weight = rng.uniform(0.5, 1.0) * (1 if wide else rng.choice([-0.7, 0.7]))
        d2 = sum((c - m) ** 2 for c, m in zip(coords, centre))
        field += weight * np.exp(-d2 / (2 * sigma ** 2))
    field -= field.min()
    return field / max(field.max(), 1e-8)


def _structure(rng: np.random.Generator, coords: list[np.ndarray], shape: Sequence[int],
               spacing: Sequence[float]) -> np.ndarray:
    """Boolean mask of one or two small ellipsoids (radius 3-6 voxels of the finest spacing).

    Each ellipsoid is centred on a voxel, so the mask is never empty.
    """
    mask = np.zeros(shape, dtype=bool)
    unit = min(spacing)
    for _ in range(int(rng.integers(1, 3))):
        radii = rng.uniform(3, 6, len(shape)) * unit
        # keep the centre at least ~one radius from the border where the image allows it
        margins = [min(int(np.ceil(r / s)), (n - 1) // 2) for n, r, s in zip(shape, radii, spacing)]
        centre_vox = [int(rng.integers(m, max(n - m, m + 1))) for n, m in zip(shape, margins)]
        centre = np.array(centre_vox) * np.array(spacing)
        d2 = sum(((c - m) / r) ** 2 for c, m, r in zip(coords, centre, radii))
        mask |= d2 <= 1.0
    return mask


def _contrast(channel: int, background: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """Monotone contrast of channel ``channel`` of the anatomy (no noise yet).

    Even channels: structure bright; odd channels: structure dark and background inverted.
    """
    gain = 1.0 + 0.25 * channel
    if channel % 2 == 0:
        return 100.0 + 90.0 * gain * background + 110.0 * structure
    return 260.0 - 80.0 * gain * background - 120.0 * structure


def _lesions(rng: np.random.Generator, coords: list[np.ndarray], shape: Sequence[int],
             spacing: Sequence[float], count: int) -> np.ndarray:
    """Boolean mask of ``count`` small spheres (radius LESION_RADIUS_VOXELS of the finest spacing), each
    centred on a voxel at least one radius from the border (so never empty)."""
    mask = np.zeros(shape, dtype=bool)
    unit = min(spacing)
    for _ in range(count):
        radius = rng.uniform(*LESION_RADIUS_VOXELS) * unit
        margins = [min(int(np.ceil(radius / s)), (n - 1) // 2) for n, s in zip(shape, spacing)]
        centre = np.array([int(rng.integers(m, max(n - m, m + 1))) for n, m in zip(shape, margins)]) \
            * np.array(spacing)
        mask |= sum((c - m) ** 2 for c, m in zip(coords, centre)) <= radius ** 2
    return mask


def make_case(shape: Sequence[int], spacing: Sequence[float], num_channels: int,
              rng: np.random.Generator, lesions: int = 0, ct: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic case: images ``float32 [C, *shape]`` and label ``uint8 [*shape]`` (0/1; 2 = lesion); with
    ``ct`` a CT-like case in HU (example_ct.make_ct_case)."""
    shape = tuple(int(s) for s in shape)
    coords = _coords_mm(shape, spacing)
    if ct:
        return make_ct_case(coords, shape, spacing, lesions, rng)
    extent = np.array(shape, dtype=np.float64) * np.array(spacing, dtype=np.float64)
    background = _smooth_background(rng, coords, extent)
    structure = _structure(rng, coords, shape, spacing)
    images = np.stack([_contrast(c, background, structure.astype(np.float64))
                       + rng.normal(0.0, 6.0, shape) for c in range(num_channels)])
    label = structure.astype(np.uint8)
    if lesions > 0:  # drawn last: the default case is unchanged
        lesion = _lesions(rng, coords, shape, spacing, lesions)
        sign = np.array([1.0 if c % 2 == 0 else -1.0 for c in range(num_channels)])
        images += LESION_CONTRAST * sign.reshape(-1, *[1] * len(shape)) * lesion
        label[lesion] = LESION_LABEL
    return images.astype(np.float32), label


def _write(array: np.ndarray, path: str, spacing: Sequence[float]) -> None:
    """Write a numpy (z, y, x) array with numpy-order ``spacing`` via SimpleITK."""
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in reversed(spacing)))
    sitk.WriteImage(img, path, useCompression=True)


def _labels(lesions: bool, images_only: bool, ct: bool) -> dict[str, int]:
    """The label names of dataset.json (an image-only dataset declares the background label only)."""
    if images_only:
        return {"background": 0}
    if ct:
        return dict(CT_LABELS)
    return {**LABELS, "lesion": LESION_LABEL} if lesions else dict(LABELS)


def _dataset_json(name: str, num_channels: int, num_train: int, lesions: bool = False,
                  images_only: bool = False, ct: bool = False) -> dict:
    """dataset.json contents in nnU-Net v2 format."""
    return {
        "name": name,
        "description": "Synthetic demo data generated by nnunet_anatomask.example_data",
        "channel_names": {"0": "CT"} if ct else _channel_names(num_channels),
        "labels": _labels(lesions, images_only, ct),
        "numTraining": num_train,
        "file_ending": ".nii.gz",
    }


def make_example_dataset(raw_root: str, dataset_id: int = 990, name: str = "AnatoMaskDemo",
                         num_train: int = 6, num_test: int = 2, shape: Sequence[int] = (32, 32, 32),
                         spacing: Sequence[float] = (1.0, 1.0, 1.0), num_channels: int = 1,
                         seed: int = 0, labels_zero: bool = False, lesions: int = 0,
                         images_only: bool = False, ct: bool = False) -> str:
    """Write a tiny synthetic nnU-Net v2 raw dataset and return its folder.

    Args:
        raw_root: the nnUNet_raw folder; ``Dataset{id:03d}_{name}`` is created inside.
        dataset_id, name: nnU-Net dataset id and name.
        num_train, num_test: cases in imagesTr/labelsTr and imagesTs/labelsTs.
        shape: image shape in numpy order (z, y, x); 2 or 3 axes.
        spacing: voxel spacing in mm, numpy order (z, y, x) (reversed for SimpleITK).
        num_channels: channels per case (files ``_0000``, ``_0001``, ...).
        seed: everything is deterministic from this seed.
        labels_zero: write all-zero labels (image-only data).
        lesions: small very bright spheres planted per case (label 2); 0 = none, the default data.
        images_only: write no labels at all (an unlabelled pool: nnUNetv2_plan_and_preprocess_unlabelled).
        ct: CT-like cases in HU (air, fat, muscle, bone, an organ = label 1; lesions of +-20..60 HU inside it);
            one channel, 3D.
    """
    if len(shape) != len(spacing):
        raise ValueError(f"shape {tuple(shape)} and spacing {tuple(spacing)} must have the same length")
    if ct and (num_channels != 1 or len(shape) != 3):
        raise ValueError(f"CT-like data has one channel and three axes, got {num_channels} channel(s) and shape "
                         f"{tuple(shape)}: use --channels 1 and a 3D --shape with --ct")
    if lesions < 0:
        raise ValueError(f"lesions must be >= 0 (spheres planted per case), got {lesions}")
    folder = os.path.join(raw_root, f"Dataset{dataset_id:03d}_{name}")
    for sub in ("imagesTr", "imagesTs") if images_only else ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    for i in range(num_train + num_test):
        split = "Tr" if i < num_train else "Ts"
        images, label = make_case(shape, spacing, num_channels, np.random.default_rng([seed, i]), lesions, ct)
        if labels_zero:
            label = np.zeros_like(label)
        case = f"case_{i:03d}"
        for c in range(num_channels):
            _write(images[c], os.path.join(folder, f"images{split}", f"{case}_{c:04d}.nii.gz"), spacing)
        if not images_only:
            _write(label, os.path.join(folder, f"labels{split}", f"{case}.nii.gz"), spacing)
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump(_dataset_json(name, num_channels, num_train, lesions > 0, images_only, ct), f, indent=2)
    return folder


def _file_ending(dataset_folder: str, first_channel_files: list[str]) -> str:
    """File ending from dataset.json, else inferred from an ``..._0000<ending>`` file name."""
    js = os.path.join(dataset_folder, "dataset.json")
    if os.path.isfile(js):
        with open(js) as f:
            ending = json.load(f).get("file_ending")
        if ending:
            return ending
    return first_channel_files[0].split("_0000", 1)[1]


def write_zero_labels(dataset_folder: str, overwrite: bool = False) -> int:
    """Write all-zero ``labelsTr`` for an image-only nnU-Net raw dataset.

    One label per case (found via its ``_0000`` channel file in imagesTr), with the
    geometry (size, spacing, origin, direction) of that image. Existing labels are
    kept unless ``overwrite``. Returns the number of label files written.
    """
    images_tr = os.path.join(dataset_folder, "imagesTr")
    if not os.path.isdir(images_tr):
        raise FileNotFoundError(f"write_zero_labels: no imagesTr folder in {dataset_folder!r}; "
                                "expected an nnU-Net raw dataset (imagesTr/<case>_0000<ending>)")
    first = sorted(f for f in os.listdir(images_tr) if "_0000." in f)
    if not first:
        raise FileNotFoundError(f"write_zero_labels: no '<case>_0000<ending>' images in {images_tr!r}")
    ending = _file_ending(dataset_folder, first)
    labels_tr = os.path.join(dataset_folder, "labelsTr")
    os.makedirs(labels_tr, exist_ok=True)
    written = 0
    for fname in first:
        if not fname.endswith("_0000" + ending):
            continue
        out = os.path.join(labels_tr, fname[: -len("_0000" + ending)] + ending)
        if os.path.exists(out) and not overwrite:
            continue
        ref = sitk.ReadImage(os.path.join(images_tr, fname))
        label = sitk.Image(ref.GetSize(), sitk.sitkUInt8)
        label.CopyInformation(ref)
        sitk.WriteImage(label, out, useCompression=True)
        written += 1
    return written


def main(argv: Sequence[str] | None = None) -> str:
    """CLI: write a demo dataset and print where it went."""
    p = argparse.ArgumentParser(description="Write a tiny synthetic nnU-Net v2 raw dataset.")
    p.add_argument("--raw", default=os.environ.get("nnUNet_raw"),
                   help="nnUNet_raw folder (default: $nnUNet_raw)")
    p.add_argument("--id", type=int, default=990, help="dataset id (default 990)")
    p.add_argument("--name", default="AnatoMaskDemo")
    p.add_argument("--num-train", type=int, default=6)
    p.add_argument("--num-test", type=int, default=2)
    p.add_argument("--shape", type=int, nargs="+", default=[32, 32, 32], help="numpy order z y x")
    p.add_argument("--spacing", type=float, nargs="+", default=None,
                   help="mm, numpy order z y x (default 1 per axis)")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels-zero", action="store_true", help="write all-zero labels (image-only data)")
    p.add_argument("--lesions", type=int, default=0,
                   help="small very bright spheres planted per case, label 2 (default 0: none)")
    p.add_argument("--images-only", action="store_true", help="write no labels (an unlabelled pool)")
    p.add_argument("--ct", action="store_true",
                   help="CT-like cases in HU: air, fat, muscle, bone, an organ (label 1) holding --lesions lesions "
                        "of +-20..60 HU (label 2); one channel named CT")
    a = p.parse_args(argv)
    if not a.raw:
        p.error("--raw is required when $nnUNet_raw is not set")
    spacing = a.spacing if a.spacing is not None else [1.0] * len(a.shape)
    folder = make_example_dataset(a.raw, a.id, a.name, a.num_train, a.num_test, a.shape, spacing,
                                  a.channels, a.seed, a.labels_zero, a.lesions, a.images_only, a.ct)
    print(f"wrote {a.num_train} training + {a.num_test} test cases "
          f"(shape {tuple(a.shape)}, spacing {tuple(spacing)}, {a.channels} channel(s)) to {folder}")
    return folder


if __name__ == "__main__":
    main()
