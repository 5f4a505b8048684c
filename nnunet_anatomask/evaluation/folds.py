"""Stage-2 runs as nnU-Net folds: one fold per (label fraction, seed, start lr), every trainer on the same folds.

nnU-Net trains fold k on ``splits_final.json[k]``, so a fold number is just a run's index: runs of one fraction
share its split (identical cases for every seed and trainer) and differ in the seed (and, for the learning-rate
comparison and Scratch's other start lrs, the start lr). Recipes are trainer names, not folds: adding one adds
trainers to the existing folds. OUT/folds.json keeps the numbering: a rerun reuses it and new runs (more seeds, another
fraction, the lr comparison) get the next free numbers, so finished folds never change meaning.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Optional, Sequence


@dataclass(frozen=True)
class Stage2Run:
    fold: int
    fraction: float
    seed: int
    initial_lr: Optional[float] = None   # None: the trainer's own default

    @property
    def key(self) -> tuple:
        return self.fraction, self.seed, self.initial_lr


def wanted_runs(fractions: Sequence[float], seeds: Sequence[int], lr_study: Optional[float],
                fraction_seeds: Optional[dict] = None, scratch_lrs: Sequence[float] = ()) -> list[tuple]:
    """(fraction, seed, lr) of every run, seed-major (a stopped run has every fraction of its first seeds);
    ``fraction_seeds`` {fraction: seeds} replaces ``seeds`` at those fractions (e.g. more seeds at the smallest);
    the lr comparison adds the smallest fraction's seeds with start lr ``lr_study``, and each of Scratch's other
    start lrs (``scratch_lrs``) the smallest fraction's seeds too."""
    per_fraction = {f: list((fraction_seeds or {}).get(f, seeds)) for f in fractions}
    order = list(dict.fromkeys([*seeds, *(s for f in fractions for s in per_fraction[f])]))
    runs = [(f, s, None) for s in order for f in fractions if s in per_fraction[f]]
    for lr in ([lr_study] if lr_study is not None else []) + [lr for lr in scratch_lrs if lr != lr_study]:
        runs += [(min(fractions), s, lr) for s in per_fraction[min(fractions)]]
    return runs


def assign_folds(existing: Sequence[Stage2Run], wanted: Sequence[tuple]) -> tuple[list[Stage2Run], list[Stage2Run]]:
    """(all runs: the existing ones with their folds plus the new ones numbered after them, the wanted runs)."""
    by_key = {r.key: r for r in existing}
    table = list(existing)
    for key in wanted:
        if key not in by_key:
            by_key[key] = Stage2Run(len(table), *key)
            table.append(by_key[key])
    return table, [by_key[k] for k in wanted]


def load_folds(path: str) -> list[Stage2Run]:
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [Stage2Run(**r) for r in json.load(f)]


def save_folds(path: str, table: Sequence[Stage2Run]) -> None:
    with open(path, "w") as f:
        json.dump([asdict(r) for r in table], f, indent=1)
