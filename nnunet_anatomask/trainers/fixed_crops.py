"""Fixed crops of preprocessed cases, drawn once by a seeded generator of their own (docs/watching.md).

The held-out reconstruction loss and the linear probe evaluate on the same crops every time they run, so their
values compare across epochs, and they draw them from a ``numpy.random.Generator`` seeded by a constant (ours):
the global torch / numpy / random streams that stage 1's masks and nnU-Net's loader draw from are never touched,
so a run with these features trains bit-identically to a run without them.

A crop is a box of the plans' patch placed as nnU-Net's loader places one without augmentation: inside the case
where the case is larger than the patch, centred and zero-padded where it is smaller. A share of the crops may
be centred on a labelled voxel (nnU-Net's foreground oversampling, from the ``class_locations`` its preprocessing
stores); the rest are placed uniformly.
"""
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch

from nnunet_anatomask import knobs


class Crops(NamedTuple):
    """Images ``[n, C, *patch]`` (float32, CPU), labels ``[n, 1, *patch]`` (int16, CPU; nnU-Net's -1 outside the
    nonzero region read as background, as its loader does) and the cases they came from (one per crop)."""

    images: torch.Tensor
    labels: torch.Tensor
    cases: list[str]


def case_order(identifiers: Sequence[str], n: int, rng: np.random.Generator) -> list[str]:
    """The case of each of ``n`` crops: ``n`` different cases chosen by ``rng`` if there are more than ``n``, else
    every case in turn (round robin), so that cases contribute equally."""
    identifiers = sorted(identifiers)
    if len(identifiers) > n:
        chosen = np.sort(rng.choice(len(identifiers), size=n, replace=False))
        return [identifiers[i] for i in chosen]
    return [identifiers[i % len(identifiers)] for i in range(n)]


def box_start(shape: Sequence[int], patch: Sequence[int], rng: np.random.Generator,
              centre: Optional[Sequence[int]] = None) -> list[int]:
    """Lower corner of a patch box in a case of ``shape``: around ``centre`` (clipped so the box stays inside where
    it can), or uniform; negative where the case is smaller than the patch (padding on both sides)."""
    starts = []
    for axis, (size, width) in enumerate(zip(shape, patch)):
        low, high = min(0, size - width), max(0, size - width)  # size < width: centred, (width - size) padded
        if size < width:
            low = high = (size - width) // 2
        start = int(rng.integers(low, high + 1)) if centre is None else int(centre[axis]) - width // 2
        starts.append(min(max(start, low), high))
    return starts


def cut(array, starts: Sequence[int], patch: Sequence[int]) -> np.ndarray:
    """``array[:, box]`` (numpy or nnU-Net's blosc2 array, ``[C, *shape]``), zero where the box leaves the case."""
    shape = array.shape[1:]
    inside = tuple(slice(max(s, 0), min(s + w, n)) for s, w, n in zip(starts, patch, shape))
    part = np.asarray(array[(slice(None), *inside)])
    pad = [(0, 0)] + [(max(-s, 0), max(s + w - n, 0)) for s, w, n in zip(starts, patch, shape)]
    return np.pad(part, pad)


def foreground_centre(properties: dict, rng: np.random.Generator) -> Optional[np.ndarray]:
    """A voxel of a random foreground class present in the case (nnU-Net's ``class_locations``), or None."""
    locations = properties.get("class_locations") or {}
    present = [k for k in sorted(locations, key=str) if len(locations[k]) > 0]
    if not present:
        return None
    voxels = locations[present[int(rng.integers(len(present)))]]
    return np.asarray(voxels[int(rng.integers(len(voxels)))])[1:]  # column 0 is the channel


def fixed_crops(dataset, n: int, patch_size: Sequence[int], seed: int, foreground_share: float = 0.0) -> Crops:
    """``n`` crops of the plans' patch from nnU-Net's ``dataset`` (its ``identifiers`` and ``load_case``), drawn by a
    generator seeded with ``seed``; the first ``round(n * foreground_share)`` centred on labelled voxels where the
    case has any. 2d plans: one slice of the (3d) preprocessed case."""
    rng = np.random.default_rng(seed)
    cases = case_order(dataset.identifiers, n, rng)
    images, labels = [], []
    for k, case in enumerate(cases):
        data, seg, _, properties = dataset.load_case(case)
        box = (1,) * (len(data.shape) - 1 - len(patch_size)) + tuple(int(p) for p in patch_size)
        centre = foreground_centre(properties, rng) if k < round(n * foreground_share) else None
        starts = box_start(data.shape[1:], box, rng, centre)
        images.append(cut(data, starts, box).reshape(data.shape[0], *patch_size).astype(np.float32))
        label = cut(seg, starts, box).reshape(1, *patch_size)
        labels.append(np.maximum(label, 0).astype(np.int16))  # -1 (outside the nonzero crop) is background
    return Crops(torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels)), cases)


def validation_forwards(iterations: int, batch_size: int) -> int:
    """How many crops nnU-Net's validation forwards per epoch at this run length (``validation_iterations x batch
    size``): the most the held-out loss, and each of the probe's two splits, evaluate (ours), so that their cost
    stays at or below nnU-Net's validation."""
    return knobs.validation_iterations(iterations) * batch_size
