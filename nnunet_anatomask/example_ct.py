"""A CT-like synthetic case: air, fat, soft tissue, bone and an organ at realistic Hounsfield units, with small
lesions of +-20..60 HU inside the organ (``python -m nnunet_anatomask.example_data --ct``, docs/amlp.md).

The case is a body cross-section extruded along z (numpy axis 0), as an abdomen: an elliptic body in air, a rim
of subcutaneous fat, muscle inside, a bone rod along z (a spine) and an organ (label 1, liver-like) that holds the
lesions (label 2). Values are ours, typical of contrast-free abdominal CT: air -1000, fat about -100, muscle about
45, liver about 60, bone 400-700 HU, with Gaussian noise of 10 HU. nnU-Net's planner sees the channel name "CT" and
normalises with CTNormalization: clipping to the 0.5 and 99.5 percentiles of the labelled (organ and lesion)
voxels, then z-scoring with their mean and standard deviation. So after preprocessing air and fat fall on the
lower clip, bone on the upper one, and a lesion is a small focus of a few tenths of a standard deviation to a few
standard deviations inside the organ: lesions are not the highest-contrast minority (docs/amlp.md).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

AIR_HU, FAT_HU, BONE_HU = -1000.0, (-120.0, -80.0), (400.0, 700.0)
MUSCLE_HU, ORGAN_HU = (40.0, 50.0), (55.0, 65.0)
LESION_CONTRAST_HU = (20.0, 60.0)  # added or subtracted (hyper- or hypodense)
NOISE_HU = 10.0
LESION_RADIUS_VOXELS = (1.5, 3.0)  # as the MR-like demo lesions (example_data.LESION_RADIUS_VOXELS)
ORGAN_LABEL, LESION_LABEL = 1, 2


def _inside_ellipsoid(coords: list[np.ndarray], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return sum(((c - m) / r) ** 2 for c, m, r in zip(coords, centre, radii)) <= 1.0


def _body(coords: list[np.ndarray], extent: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Body (elliptic cylinder along axis 0, jittered) and its inner part (the body minus a fat rim)."""
    centre = extent / 2 + rng.uniform(-0.03, 0.03, 3) * extent
    radii = extent * np.array([1e6, rng.uniform(0.40, 0.45), rng.uniform(0.43, 0.48)])  # z: unbounded
    rim = rng.uniform(0.07, 0.10) * extent[1:].min()
    body = _inside_ellipsoid(coords, centre, radii)
    inner = _inside_ellipsoid(coords, centre, radii - np.array([0.0, rim, rim]))
    return body, inner


def _organ(coords: list[np.ndarray], extent: np.ndarray, inner: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    """A liver-like ellipsoid inside the body's inner part (never empty: its centre voxel lies inside)."""
    centre = extent * np.array([0.5, rng.uniform(0.40, 0.50), rng.uniform(0.40, 0.55)])
    radii = extent * np.array([rng.uniform(0.35, 0.45), rng.uniform(0.20, 0.26), rng.uniform(0.22, 0.30)])
    return _inside_ellipsoid(coords, centre, radii) & inner


def _bone(coords: list[np.ndarray], extent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bone rod along axis 0 (a spine) behind the organ, inside the body."""
    centre = extent * np.array([0.5, rng.uniform(0.72, 0.76), rng.uniform(0.47, 0.53)])
    radius = rng.uniform(0.06, 0.08) * extent[1:].min()
    return (coords[1] - centre[1]) ** 2 + (coords[2] - centre[2]) ** 2 <= radius ** 2


def _lesions(coords: list[np.ndarray], spacing: Sequence[float], organ: np.ndarray, count: int,
             rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` small spheres centred on organ voxels whose sphere lies in the organ where possible."""
    unit = min(spacing)
    candidates = np.argwhere(organ)
    lesions = []
    for _ in range(count):
        radius = rng.uniform(*LESION_RADIUS_VOXELS) * unit
        centre = candidates[int(rng.integers(len(candidates)))] * np.asarray(spacing)
        sphere = sum((c - m) ** 2 for c, m in zip(coords, centre)) <= radius ** 2
        lesions.append(sphere & organ)
    return lesions


def make_ct_case(coords: list[np.ndarray], shape: Sequence[int], spacing: Sequence[float], lesions: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One CT-like case: image ``float32 [1, *shape]`` in HU and label ``uint8 [*shape]`` (1 organ, 2 lesion)."""
    if len(shape) != 3:
        raise ValueError(f"the CT-like case is 3D (a body extruded along z), got shape {tuple(shape)}: give three "
                         "axes (z y x)")
    extent = np.array(shape, dtype=np.float64) * np.array(spacing, dtype=np.float64)
    body, inner = _body(coords, extent, rng)
    organ = _organ(coords, extent, inner, rng)
    bone = _bone(coords, extent, rng) & inner & ~organ
    image = np.full(shape, AIR_HU)
    image[body] = rng.uniform(*FAT_HU)
    image[inner] = rng.uniform(*MUSCLE_HU)
    image[organ] = rng.uniform(*ORGAN_HU)
    image[bone] = rng.uniform(*BONE_HU)
    label = organ.astype(np.uint8) * ORGAN_LABEL
    for sphere in _lesions(coords, spacing, organ, lesions, rng):
        image[sphere] += rng.choice([-1.0, 1.0]) * rng.uniform(*LESION_CONTRAST_HU)
        label[sphere] = LESION_LABEL
    image += rng.normal(0.0, NOISE_HU, shape)
    return image[None].astype(np.float32), label
