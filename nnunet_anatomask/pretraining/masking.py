"""Cell-mask sampling shared by every scheme: batched tensor code, no per-sample loops (docs/architecture.md).

A mask is a bool tensor [B, N] over the N cells of the grid (row-major), True = masked.
"""
import torch


def num_masked(num_cells: int, ratio: float) -> int:
    """round(ratio * N) as SparK, kept in [1, N - 1] so that something is masked and something is seen (ours)."""
    return min(num_cells - 1, max(1, round(ratio * num_cells)))


def top_n_mask(priority: torch.Tensor, n: int) -> torch.Tensor:
    """Mask the n cells of highest priority in every row of [B, N]: exactly n per sample."""
    chosen = priority.topk(n, dim=1).indices
    return torch.zeros_like(priority, dtype=torch.bool).scatter_(1, chosen, True)


def random_mask(random_key: torch.Tensor, n_masked: int) -> torch.Tensor:
    """MAE's random_masking: n_masked cells chosen uniformly, via the ranks of uniform noise [B, N]."""
    return top_n_mask(random_key, n_masked)


def hardest_cells(scores: torch.Tensor, random_key: torch.Tensor, n_hard: int) -> torch.Tensor:
    """Indices [B, n_hard] of the highest-scoring cells, ties broken by the random key."""
    by_key = random_key.argsort(dim=1, descending=True)
    by_score = scores.gather(1, by_key).argsort(dim=1, descending=True, stable=True)
    return by_key.gather(1, by_score[:, :n_hard])


def mask_with_cells_first(first_cells: torch.Tensor, random_key: torch.Tensor, n_masked: int) -> torch.Tensor:
    """Mask the given cells [B, k] (k <= n_masked) plus n_masked - k other cells chosen by the random key."""
    priority = random_key.clone()
    priority.scatter_(1, first_cells, 2.0)  # keys lie in [0, 1)
    return top_n_mask(priority, n_masked)


def guided_mask(scores: torch.Tensor, random_key: torch.Tensor, n_masked: int, n_hard: int) -> torch.Tensor:
    """AnatoMask / HPM selection: the n_hard highest-scoring cells plus n_masked - n_hard random other cells.

    With n_hard = 0, or scores all equal, this is exactly random_mask(random_key, n_masked).
    """
    return mask_with_cells_first(hardest_cells(scores, random_key, n_hard), random_key, n_masked)


def row_ranks(values: torch.Tensor, descending: bool = False) -> torch.Tensor:
    """Each entry's rank within its row [B, N] (0 = the lowest, or the highest if ``descending``)."""
    return values.argsort(dim=1, descending=descending).argsort(dim=1)


def complementary_masks(random_key: torch.Tensor, k: int) -> torch.Tensor:
    """k masks [k, B, N] whose masked sets partition the cells (each cell masked exactly once); ours."""
    ranks = row_ranks(random_key)
    group = ranks * k // random_key.shape[1]
    return torch.stack([group == i for i in range(k)])


def ranked_key(scores: torch.Tensor, random_key: torch.Tensor, key_weight: float) -> torch.Tensor:
    """A key in [0, 1) that orders the cells of each row [B, N] by their score's rank, mixed with the random key:
    (rank(score) / N + key_weight * key) / (1 + key_weight); rank 0 = lowest score. Ours (AMLP's background order,
    docs/amlp.md): key_weight 0 orders by score alone, a large key_weight approaches the random key's order."""
    ranks = row_ranks(scores).to(random_key.dtype) / scores.shape[1]
    return (ranks + key_weight * random_key) / (1.0 + key_weight)


def preferential_mask(preferred: torch.Tensor, random_key: torch.Tensor, n_masked: int,
                      n_preferred: int) -> torch.Tensor:
    """Mask n_masked cells per row: n_preferred cells of the preferred set [B, N] (all of them if it holds
    fewer), then cells outside the set, then the set's other cells if the outside is too small; each group in
    the order of the random key. AMLP's masked patch selection with a fixed share (docs/amlp.md).

    So a row masks exactly max(n_masked - |outside|, min(n_preferred, |preferred|)) preferred cells; with no
    preferred cells this is random_mask(random_key, n_masked).
    """
    in_set_key = torch.where(preferred, random_key, -1.0)  # keys lie in [0, 1): preferred cells rank first
    first = preferred & (row_ranks(in_set_key, descending=True) < n_preferred)
    return top_n_mask(random_key + 2.0 * first + 1.0 * ~preferred, n_masked)
