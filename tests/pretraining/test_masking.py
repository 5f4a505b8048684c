import torch

from nnunet_anatomask.pretraining import masking


def test_num_masked_rounds_and_keeps_one_of_each():
    assert masking.num_masked(8, 0.6) == 5
    assert masking.num_masked(343, 0.6) == 206
    assert masking.num_masked(4, 0.99) == 3
    assert masking.num_masked(4, 0.0) == 1


def test_random_mask_exact_ratio_every_sample():
    torch.manual_seed(0)
    key = torch.rand(16, 64)
    mask = masking.random_mask(key, 38)
    assert mask.dtype == torch.bool
    assert (mask.sum(1) == 38).all()
    # the masked cells are the 38 largest keys of each row
    assert (key[mask].reshape(16, 38).min(1).values > key[~mask].reshape(16, 26).max(1).values).all()


def test_guided_mask_planted_error_map():
    """Chosen cells = exactly the top-n_hard scored cells plus (n_masked - n_hard) others, for every sample."""
    torch.manual_seed(1)
    b, n, n_masked, n_hard = 4, 20, 12, 5
    scores = torch.zeros(b, n)
    planted = torch.stack([torch.randperm(n)[:n_hard] for _ in range(b)])
    scores.scatter_(1, planted, torch.arange(1, n_hard + 1, dtype=torch.float).expand(b, -1) + 10)
    key = torch.rand(b, n)
    mask = masking.guided_mask(scores, key, n_masked, n_hard)
    assert (mask.sum(1) == n_masked).all()
    assert mask.gather(1, planted).all()
    # the remaining masked cells are the highest keys among the unplanted cells
    rest_key = key.clone().scatter_(1, planted, -1.0)
    expected_rest = masking.top_n_mask(rest_key, n_masked - n_hard)
    assert torch.equal(mask & ~torch.zeros_like(mask).scatter_(1, planted, True), expected_rest)


def test_guided_mask_alpha_zero_and_ties_equal_random():
    torch.manual_seed(2)
    key = torch.rand(3, 27)
    scores = torch.rand(3, 27)
    assert torch.equal(masking.guided_mask(scores, key, 16, 0), masking.random_mask(key, 16))
    ties = torch.zeros(3, 27)
    assert torch.equal(masking.guided_mask(ties, key, 16, 8), masking.random_mask(key, 16))


def test_hardest_cells_breaks_ties_by_key():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0]])
    key = torch.tensor([[0.9, 0.1, 0.8, 0.5]])
    assert masking.hardest_cells(scores, key, 1).tolist() == [[2]]
    assert sorted(masking.hardest_cells(scores, key, 3).tolist()[0]) == [0, 1, 2]


def test_complementary_masks_partition_cells():
    key = torch.rand(2, 10)
    masks = masking.complementary_masks(key, 2)
    assert masks.shape == (2, 2, 10)
    assert (masks.sum(0) == 1).all()
    assert (masks[0].sum(1) == 5).all()


def test_ranked_key_orders_by_score_rank_and_mixes_the_random_key():
    """(rank(score) / N + w key) / (1 + w), rank 0 = lowest score, always in [0, 1). Catches: a descending rank,
    the score itself instead of its rank, a missing normalisation (keys >= 1 would jump preferential_mask's
    groups)."""
    scores = torch.tensor([[0.1, 0.9, 0.5, -3.0]])
    key = torch.tensor([[0.0, 0.0, 0.6, 0.9]])
    expected = torch.tensor([[(1 / 4 + 0.0) / 1.5, (3 / 4 + 0.0) / 1.5, (2 / 4 + 0.3) / 1.5, (0 + 0.45) / 1.5]])
    assert torch.allclose(masking.ranked_key(scores, key, 0.5), expected)
    assert torch.equal(masking.ranked_key(scores, key, 0.0).argsort(), scores.argsort())
    many = masking.ranked_key(torch.randn(8, 100) * 50, torch.rand(8, 100) * 0.999999, 0.5)
    assert many.min() >= 0 and many.max() < 1


def test_row_ranks_per_row_ascending_and_descending():
    """Rows whose sort order is not its own inverse, so ranks differ from the sorting permutation."""
    values = torch.tensor([[0.2, 0.3, 0.1, 0.9], [4.0, 1.0, 3.0, 2.0]])
    assert masking.row_ranks(values).tolist() == [[1, 2, 0, 3], [3, 0, 2, 1]]
    assert masking.row_ranks(values, descending=True).tolist() == [[2, 1, 3, 0], [0, 3, 1, 2]]
