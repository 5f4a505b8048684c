"""Data that cannot teach stage 1, caught before it starts (docs/troubleshooting.md).

A case whose every voxel has one value per channel (e.g. a blank export: all 1000, all 0 after nnU-Net's z-score)
gives masked image modelling nothing to reconstruct: stage 1 runs to "Stage 1 done" on it, and the only hint is a
foreground share of 0 in the log. A case with NaN/Inf voxels stops stage 1 at its first epoch with a non-finite
loss. Before stage 1, a sample of the preprocessed cases is read (ours: up to SAMPLED_CASES, evenly spread over the
sorted case names; every case of a small dataset): a constant or non-finite sample in every checked case refuses
the run, naming the cases and the fix; constant cases among others are named in a warning, and stage 1 goes on.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

from nnunet_anatomask.errors import PluginError

SAMPLED_CASES = 8  # ours: reading a case costs about as much as preprocessing wrote; 8 keep the check in seconds


class UnusableDataError(PluginError, ValueError):
    """The preprocessed cases give stage 1 nothing to learn from (constant) or cannot be trained on (NaN/Inf)."""


def sampled(identifiers: list[str], n: int = SAMPLED_CASES) -> list[str]:
    """Up to ``n`` identifiers evenly spread over the sorted list (all of them when there are at most ``n``)."""
    names = sorted(identifiers)
    if len(names) <= n:
        return names
    return [names[round(i * (len(names) - 1) / (n - 1))] for i in range(n)]


def case_problem(data: np.ndarray) -> Optional[tuple[str, str]]:
    """('non-finite' | 'constant', detail) for a (channels, ...) case array, None for a usable one."""
    if not np.isfinite(data).all():
        return "non-finite", f"{int(np.isnan(data).sum())} NaN, {int(np.isinf(data).sum())} Inf voxels"
    flat = data.reshape(data.shape[0], -1)
    if (flat.min(axis=1) == flat.max(axis=1)).all():
        return "constant", "all " + " / ".join(f"{v:.4g}" for v in flat[:, 0])  # one value per channel
    return None


def check_cases_can_teach(folder: str, dataset_name: str, warn: Callable[[str], None]) -> None:
    """Refuse when a sampled case is non-finite or every sampled case is constant; warn about constant ones."""
    dataset_class = infer_dataset_class(folder)
    identifiers = dataset_class.get_identifiers(folder)
    checked = sampled(identifiers)
    dataset = dataset_class(folder, checked)
    found: dict[str, dict[str, str]] = {"non-finite": {}, "constant": {}}
    for name in checked:
        problem = case_problem(np.asarray(dataset.load_case(name)[0][:]))
        if problem is not None:
            found[problem[0]][name] = problem[1]
    raw = f"nnUNet_raw/{dataset_name}/imagesTr"
    non_finite, constant = found["non-finite"], found["constant"]
    if non_finite:
        raise UnusableDataError(
            f"{len(non_finite)} of the {len(checked)} preprocessed cases checked hold NaN or Inf voxels, which stop "
            f"stage 1 with a non-finite loss: {listing(non_finite)}. Fix: replace those voxels in the images in "
            f"{raw} (or remove the cases), then run nnUNetv2_plan_and_preprocess again.")
    if checked and len(constant) == len(checked):
        raise UnusableDataError(
            f"Every preprocessed case checked ({len(checked)} of {len(identifiers)}) is constant: "
            f"{listing(constant)}. Masked image modelling has nothing to reconstruct, so stage 1 would learn "
            f"nothing. Fix: check the images in {raw} (a blank export, a wrong intensity scaling), then run "
            f"nnUNetv2_plan_and_preprocess again.")
    if constant:
        warn(f"WARNING: {len(constant)} of the {len(checked)} preprocessed cases checked are constant, and stage 1 "
             f"learns nothing from them: {listing(constant)}. Check these images in {raw}; stage 1 goes on.")


def listing(details: dict[str, str]) -> str:
    return ", ".join(f"{name} ({detail})" for name, detail in details.items())
