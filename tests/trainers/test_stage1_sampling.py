"""Which cases each stage-1 process draws from: DDP shards and pool source weights (known answers)."""
import numpy as np
import pytest

from nnunet_anatomask.trainers.stage1_sampling import case_probabilities, describe, draw_shares, rank_shard

POOL = {"pool_sources": {"Dataset601_A": {"prefix": "D601_", "cases": 3, "weight": 3.0},
                         "Dataset602_B": {"prefix": "D602_", "cases": 1, "weight": 1.0}}}
CASES = ["D601_a", "D601_b", "D601_c", "D602_x"]


def test_shards_split_the_cases_between_ranks_like_distributed_sampler():
    cases = [f"case_{i}" for i in range(7)]
    shards = [rank_shard(cases, r, 3) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]  # padded by wrapping around to a multiple of the world size
    assert set().union(*shards) == set(cases)  # every case drawn by some rank
    assert len(set(shards[0]) | set(shards[1]) | set(shards[2])) == 7 and sum(map(len, shards)) == 9  # 2 repeats
    assert rank_shard(cases, 1, 3) == shards[1]  # the same on every call (and so every rank)
    assert rank_shard(cases, 0, 1) == cases  # one process: every case, nnU-Net's order


def test_source_weights_set_each_sources_share_of_the_draws():
    p = case_probabilities(CASES, POOL)
    assert p.sum() == pytest.approx(1.0)
    assert p[:3] == pytest.approx([0.25, 0.25, 0.25]) and p[3] == pytest.approx(0.25)  # 3:1 over 3 and 1 cases
    heavy = {"pool_sources": {**POOL["pool_sources"], "Dataset602_B": {"prefix": "D602_", "cases": 1,
                                                                       "weight": 9.0}}}
    assert draw_shares(CASES, case_probabilities(CASES, heavy), heavy) == pytest.approx(
        {"Dataset601_A": 0.25, "Dataset602_B": 0.75})
    # a shard without B: A takes every draw
    assert case_probabilities(CASES[:2], POOL) == pytest.approx([0.5, 0.5])


def test_without_weights_every_case_is_drawn_alike():
    unweighted = {"pool_sources": {k: {**v, "weight": None} for k, v in POOL["pool_sources"].items()}}
    assert case_probabilities(CASES, unweighted) is None and case_probabilities(CASES, {}) is None
    assert draw_shares(CASES, None, unweighted) == pytest.approx({"Dataset601_A": 0.75, "Dataset602_B": 0.25})
    line = describe(CASES[:2], 4, None, unweighted, 0, 2)
    assert "Stage-1 cases: 4; rank 0 of 2 draws from 2 of them" in line and "Dataset601_A 100.0 %" in line


def test_a_case_of_no_source_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="belongs to none of the pool's sources.*--as"):
        case_probabilities(["D601_a", "stray"], POOL)


def test_drawn_frequencies_follow_the_probabilities():
    """nnU-Net's loader draws with numpy's choice over these probabilities (batchgenerators' get_indices)."""
    p = case_probabilities(CASES, POOL)
    draws = np.random.default_rng(0).choice(CASES, 20000, p=p)
    assert np.mean([d.startswith("D602_") for d in draws]) == pytest.approx(0.25, abs=0.01)
