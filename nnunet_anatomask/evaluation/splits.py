"""Label fractions as nnU-Net folds: ``splits_final.json`` where fold k holds the labelled cases of fraction k.

All folds share one validation set of training cases; the labelled subsets are nested (the cases of a smaller
fraction are among those of every larger one), drawn from one seeded permutation.
"""
from __future__ import annotations

import json
import math
import os
from typing import Sequence

import numpy as np

from nnunet_anatomask.evaluation.errors import EvaluationError


def fraction_counts(fractions: Sequence[float], pool: int) -> list[int]:
    """Labelled-case counts: max(1, round(f * pool)) (half up), at most ``pool``."""
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise EvaluationError(f"label fraction(s) {bad} outside (0, 1]. Fix: give fractions such as 0.1 0.25 1.0.")
    return [min(pool, max(1, int(math.floor(f * pool + 0.5)))) for f in fractions]


def make_splits(train_cases: Sequence[str], num_val: int, counts: Sequence[int], seed: int = 0) -> list[dict]:
    """Fold k = counts[k] labelled cases; nested subsets of one seeded permutation; the same validation cases."""
    order = [train_cases[i] for i in np.random.default_rng(seed).permutation(len(train_cases))]
    val, pool = sorted(order[:num_val]), order[num_val:]
    return [{"train": sorted(pool[:n]), "val": val} for n in counts]


def write_splits(path: str, splits: list[dict]) -> None:
    """Write ``splits_final.json``; an existing file must begin with the same splits (models were trained on them;
    new folds may be appended)."""
    if os.path.isfile(path):
        with open(path) as f:
            old = json.load(f)
        if old != splits[: len(old)]:
            raise EvaluationError(f"{path} holds other splits than this run asks for: models trained on them would "
                                  f"be mixed up. Fix: use another --output, or delete that file and the results "
                                  f"trained on it.")
        if old == splits:
            return
    with open(path, "w") as f:
        json.dump(splits, f, indent=2)
