"""What nnUNetv2_plan_and_preprocess_unlabelled checks before anything is written, naming the case and the fix.

nnU-Net's own checks stop later and less clearly: a channel count that does not match dataset.json gives an
``IndexError`` in the fingerprint, NaN voxels nnU-Net's ``AssertionError: Images contains NaN values`` with no case
named, and Inf voxels pass unnoticed into the fingerprint (``mean: inf, std: nan``), so stage 1 stops at epoch 0.
"""
from __future__ import annotations

import os

import numpy as np

from nnunet_anatomask.unlabelled.pool import PoolError


def check_channel_files(cases: dict, channel_names: dict, file_ending: str) -> None:
    """Every case has one image per channel of dataset.json, named <case>_0000 ... <case>_<N-1>."""
    expected = [f"_{c:04d}{file_ending}" for c in range(len(channel_names))]
    for case, entry in cases.items():
        found = sorted(os.path.basename(f)[len(case):] for f in entry["images"])
        if found != expected:
            raise PoolError(
                f"Case {case} has the image files {[case + f for f in found]}, but dataset.json lists "
                f"{len(channel_names)} channels ({', '.join(map(str, channel_names.values()))}), so each case needs "
                f"{[case + e for e in expected]}. Fix: add or rename the files in imagesTr, or correct channel_names "
                f"in dataset.json.")


def check_finite(images: np.ndarray, image_files: list[str]) -> None:
    """No NaN or Inf voxel in one case's images (channels, ...)."""
    if np.isfinite(images).all():
        return
    bad = [f"{os.path.basename(f)} ({int(np.isnan(c).sum())} NaN, {int(np.isinf(c).sum())} Inf)"
           for f, c in zip(image_files, images) if not np.isfinite(c).all()]
    raise PoolError(
        f"NaN or Inf voxels in {'; '.join(bad)} (in {os.path.dirname(image_files[0])}): nnU-Net's intensity "
        f"statistics and stage 1 need finite intensities. Fix: replace those voxels (e.g. with the image's minimum, "
        f"or 0 outside the field of view) or remove the case from imagesTr, then run this command again.")
