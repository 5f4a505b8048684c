"""DDP of stage 1 on a tiny model, two gloo processes (default suite; the trainer-level checks are in
test_stage1_ddp.py, slow). Tolerance: ddp_helpers.RELATIVE_TOLERANCE (float32 sums in another order; SGD, so
that a gradient difference d moves a weight by lr * d)."""
import os

import pytest
import torch

from tests.pretraining.schemes.conftest import tiny_model
from tests.trainers import ddp_helpers as h

SCHEMES = ["AnatoMask", "HeadAndBuffers"]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> str:
    """Two ranks (one spawn: buffers, then both schemes), then one process on the whole batch, in this process."""
    out = str(tmp_path_factory.mktemp("tiny"))
    h.spawn(2, out, h.tiny_two_ranks, SCHEMES, out)
    with torch.random.fork_rng():
        for scheme in SCHEMES:
            h.tiny_run(0, scheme, "sgd", out)
    return out


def test_sync_buffers_averages_floats_and_takes_rank0_for_the_rest(out):
    """Catches: buffers left per rank, summed instead of averaged, or integer buffers averaged."""
    for rank in (0, 1):
        buffers = torch.load(os.path.join(out, f"buffers_rank{rank}.pt"))
        assert torch.equal(buffers["float32"], torch.full((3,), 1.5))
        assert torch.equal(buffers["float64"], torch.tensor([5.0], dtype=torch.float64))
        assert buffers["counter"].item() == 7


@pytest.mark.parametrize("scheme", SCHEMES)
def test_two_ranks_equal_one_process_on_the_whole_batch(out, scheme):
    """Ranks start from different random weights (DDP broadcasts rank 0's: student, mask tokens, teacher, head)
    and end bitwise equal, and equal to one process on the concatenated batch. Catches: the scheme's head or the
    teacher left out of the DDP module, gradients not averaged, buffers not merged."""
    def load(world, rank=0):
        return torch.load(os.path.join(out, f"tiny_{scheme}_sgd_{world}_rank{rank}.pt"), weights_only=False)

    rank0, rank1, single = load(2, 0), load(2, 1), load(1)
    assert h.max_difference(rank0["state"], rank1["state"]) == 0.0
    difference = h.max_difference(rank0["state"], single["state"])
    torch.manual_seed(0)  # rank 0's and the single process's initial weights
    change = h.max_difference(tiny_model().network.state_dict(), single["state"]["network"])
    assert difference < h.RELATIVE_TOLERANCE * change, f"{difference:.3g} of a weight change {change:.3g}"
    assert [(a + b) / 2 for a, b in zip(rank0["losses"], rank1["losses"])] == pytest.approx(single["losses"],
                                                                                             rel=1e-5)
    print(f"{scheme}: max |two ranks - one process| = {difference:.3g}, largest weight change {change:.3g}")


PAPER_SCHEMES = ["SelfMedHPM", "AMLP", "GLMAE"]  # loss predictor + teacher; centroids + metric; heads + teacher


@pytest.fixture(scope="module")
def paper_out(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("paper"))
    h.spawn(2, out, h.paper_schemes_two_ranks, PAPER_SCHEMES, out)
    return out


@pytest.mark.parametrize("scheme", PAPER_SCHEMES)
def test_paper_schemes_stay_identical_on_both_ranks(paper_out, scheme):
    """Each rank trains on its own sample with AdamW from its own random initialisation; after 4 steps student,
    heads, teachers, centroids and optimiser state are bitwise equal. Catches: a head outside the DDP module, a
    teacher or buffer left per rank."""
    rank0, rank1 = (torch.load(os.path.join(paper_out, f"tiny_{scheme}_adamw_2_rank{r}.pt"), weights_only=False)
                    for r in (0, 1))
    assert h.max_difference(rank0["state"], rank1["state"]) == 0.0
    assert rank0["losses"] != rank1["losses"]  # the ranks did see different samples


def test_amlp_ranks_choose_the_same_lesion_like_cluster(paper_out):
    """Each rank clusters its own cells; the lesion-like cluster (the most focal with blob features, the smallest
    with intensity features) is chosen from sizes and sums over both ranks, so both ranks choose what one process
    would choose on all cells (the concatenation), although each rank alone would choose the other cluster for one
    of the rules (ddp_helpers.AMLP_RANK_CLUSTERS). Catches: a choice from each rank's own clustering (the averaged
    centroids would then mix a lesion-like with a background centroid)."""
    from nnunet_anatomask.pretraining.schemes.amlp import categories
    choices = [torch.load(os.path.join(paper_out, f"amlp_choice_2_rank{r}.pt")) for r in (0, 1)]
    parts = [h.amlp_rank_points(r) for r in (0, 1)]
    points, assignment = torch.cat([p for p, _ in parts], 1), torch.cat([a for _, a in parts], 1)
    for features, expected in (("blob", 0), ("intensity", 1)):
        assert categories.lesion_like(points, assignment, 2, 2, most_focal=features == "blob")[0].item() == expected
        for rank, choice in enumerate(choices):
            index, lesion_like = choice[features]
            assert index == expected, (features, rank)
            assert torch.equal(lesion_like, parts[rank][1].view(1, -1) == expected)
