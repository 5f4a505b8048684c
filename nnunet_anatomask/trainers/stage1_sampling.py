"""Which cases stage 1 draws from, and how often (docs/pools_and_ddp.md).

* Ranks (DDP): the fold's training cases are split between the ranks like torch's ``DistributedSampler``
  (a permutation seeded the same on every rank, padded by wrapping around to a multiple of the world size, rank r
  taking every world-th case from position r), so the ranks draw from disjoint shards (up to the padding) and a
  node reads only its ranks' cases. Each rank then draws crops from its shard at random, as nnU-Net's loader
  does. One process keeps every case in nnU-Net's order (unchanged behaviour).
* Pool sources: a pool made by ``nnUNetv2_plan_and_preprocess_unlabelled --as`` records its sources in
  dataset.json (``pool_sources``). With sampling weights, a case of source s is drawn with probability
  w_s / (sum of w) / n_s, n_s the source's cases among those this rank draws from, so each source's share of
  the draws is its weight's share on every rank (ours); without weights every case is drawn alike.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from nnunet_anatomask.trainers import stage1_ddp
from nnunet_anatomask.unlabelled.pool import POOL_SOURCES

SHARD_SEED = 0  # the permutation of the cases before they are split between the ranks (the same on every rank)


def rank_shard(identifiers: Sequence[str], rank: int, world_size: int) -> list[str]:
    """The cases of ``rank`` among ``world_size`` ranks (``DistributedSampler``'s split, ``drop_last=False``)."""
    if world_size <= 1:
        return list(identifiers)
    order = np.random.default_rng(SHARD_SEED).permutation(len(identifiers))
    padded = np.resize(order, -(-len(identifiers) // world_size) * world_size)  # wraps around
    return [identifiers[i] for i in padded[rank::world_size]]


def source_of(case: str, sources: dict) -> Optional[str]:
    return next((name for name, s in sources.items() if case.startswith(s["prefix"])), None)


def case_probabilities(identifiers: Sequence[str], dataset_json: dict) -> Optional[np.ndarray]:
    """Per-case draw probabilities from the pool's source weights, or None (every case alike)."""
    sources = dataset_json.get(POOL_SOURCES) or {}
    if not sources or any(s.get("weight") is None for s in sources.values()):
        return None
    of_case = [source_of(c, sources) for c in identifiers]
    counts = {name: of_case.count(name) for name in sources}
    present = {name for name, n in counts.items() if n}
    if None in of_case:  # a case of no source (the pool's folder was edited by hand)
        raise ValueError(f"case {identifiers[of_case.index(None)]} belongs to none of the pool's sources "
                         f"{sorted(sources)} (dataset.json pool_sources). Fix: plan the pool again with "
                         f"nnUNetv2_plan_and_preprocess_unlabelled --as.")
    total = sum(sources[name]["weight"] for name in present)
    p = np.array([sources[name]["weight"] / total / counts[name] for name in of_case], dtype=np.float64)
    return p / p.sum()  # exact sum 1 for numpy's choice


def draw_shares(identifiers: Sequence[str], probabilities: Optional[np.ndarray], dataset_json: dict) -> dict:
    """{source: share of this rank's draws} of a pool (empty for other datasets)."""
    sources = dataset_json.get(POOL_SOURCES) or {}
    if not sources:
        return {}
    p = np.full(len(identifiers), 1 / len(identifiers)) if probabilities is None else probabilities
    shares = {name: 0.0 for name in sources}
    for case, pc in zip(identifiers, p):
        shares[source_of(case, sources)] += float(pc)
    return shares


def describe(identifiers: Sequence[str], all_cases: int, probabilities: Optional[np.ndarray], dataset_json: dict,
             rank: int, world_size: int) -> str:
    """The log line: cases drawn from (this rank's shard) and each pool source's share of the draws."""
    where = f"; rank {rank} of {world_size} draws from {len(identifiers)} of them" if world_size > 1 else ""
    text = f"Stage-1 cases: {all_cases}{where}"
    shares = draw_shares(identifiers, probabilities, dataset_json)
    if shares:
        how = "source weights" if probabilities is not None else "every case alike"
        text += f"; pool sources ({how}): " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in shares.items())
    return text


def stage1_cases(trainer) -> tuple[list[str], Optional[np.ndarray], str]:
    """(this rank's cases, their draw probabilities or None, the log line) for the trainer's fold."""
    training_cases, _ = trainer.do_split()
    rank, world = stage1_ddp.rank(), stage1_ddp.world_size()
    cases = rank_shard(training_cases, rank, world)
    p = case_probabilities(cases, trainer.dataset_json)
    return cases, p, describe(cases, len(training_cases), p, trainer.dataset_json, rank, world)
