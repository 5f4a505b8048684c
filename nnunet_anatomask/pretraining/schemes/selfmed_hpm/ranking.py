"""HPM's relative ranking loss and its diagnostics, batched over the cells of each image (Wang et al., CVPR 2023,
``forward_learning_loss(relative=True)``; docs/selfmedhpm.md)."""
import torch
import torch.nn.functional as F

from nnunet_anatomask.pretraining.masking import row_ranks


def pair_signs(values: torch.Tensor) -> torch.Tensor:
    """``sign(v_j - v_i)`` for every pair of cells of every image: ``[B, M]`` -> ``[B, M, M]`` (index [b, i, j])."""
    return torch.sign(values.unsqueeze(1) - values.unsqueeze(2))


def relative_ranking_loss(predicted: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """HPM's relative loss: BCE(sigmoid(p_j - p_i), 1[l_j > l_i]) over the pairs of cells of the same image with
    l_i != l_j (ties excluded), averaged over all such pairs of the batch (HPM: ``loss.sum() / labels_valid.sum()``).

    ``predicted``, ``actual``: ``[B, M]`` over the ranked cells. With s = sign(l_j - l_i) in {-1, 1} the BCE is
    softplus(-s (p_j - p_i)), the numerically stable form of HPM's log(sigmoid(.) + 1e-6) (ours: no 1e-6).
    """
    target = pair_signs(actual.detach().float())
    logits = predicted.float().unsqueeze(1) - predicted.float().unsqueeze(2)  # p_j - p_i
    valid = target.abs()
    return (F.softplus(-target * logits) * valid).sum() / valid.sum().clamp_min(1.0)


@torch.no_grad()
def ranking_accuracy(predicted: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """Fraction of the pairs with l_i != l_j that the prediction orders correctly (a tie in p counts 1/2), pooled
    over the batch like the loss (ours)."""
    target = pair_signs(actual.float())
    valid = target.abs()
    agree = (pair_signs(predicted.float()) * target + 1.0) * 0.5
    return (agree * valid).sum() / valid.sum().clamp_min(1.0)


@torch.no_grad()
def spearman(predicted: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """Spearman's rho between ``[B, M]`` predicted and actual losses, per image, averaged over the batch:
    1 - 6 sum d^2 / (M (M^2 - 1)) on ordinal ranks (ties broken by position; float losses rarely tie)."""
    m = predicted.shape[1]
    ranks = [row_ranks(v.float()).float() for v in (predicted, actual)]
    d2 = (ranks[0] - ranks[1]).square().sum(dim=1)
    return (1.0 - 6.0 * d2 / max(m * (m * m - 1), 1)).mean()


def ranked_cells(cell_mask: torch.Tensor, n_masked: int, limit: int) -> torch.Tensor:
    """Indices ``[B, M]`` of the cells whose losses are ranked: the ``n_masked`` masked cells of every row, or a
    uniformly random ``limit`` of them if there are more (ours: bounds the ``[B, M, M]`` pair tensors)."""
    priority = cell_mask.float()
    if n_masked > limit:
        priority = priority + 0.5 * torch.rand_like(priority)  # random order among the masked cells (all >= 1)
    return priority.topk(min(n_masked, limit), dim=1).indices
