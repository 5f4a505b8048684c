"""Batched k-means on the device: a few Lloyd iterations per call, warm-started from given centroids.

Used by AMLP's masked patch selection (docs/amlp.md); generic, so any scheme may cluster cells. Points are
``[G, M, D]`` (G independent problems: one for a whole batch, or one per sample), an optional ``valid`` mask
``[G, M]`` leaves points out, centroids are ``[G, K, D]``. No loops over points or groups, no ``.item()``: a
fixed number of iterations, so the cost is known and ``torch.compile`` could trace it.
"""
from typing import Optional

import torch


def squared_distances(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """``[G, M, D]`` x ``[G, K, D]`` -> ``[G, M, K]`` squared Euclidean distances."""
    return (points.unsqueeze(-2) - centroids.unsqueeze(-3)).pow(2).sum(-1)


def _valid_weights(points: torch.Tensor, valid: Optional[torch.Tensor]) -> torch.Tensor:
    if valid is None:
        return points.new_ones(points.shape[:2])
    return valid.to(points.dtype)


def cluster_means(points: torch.Tensor, assignment: torch.Tensor, previous: torch.Tensor,
                  valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Lloyd's update: each centroid becomes the mean of its valid points; an empty cluster keeps ``previous``.

    Differentiable in ``points`` (the assignment is a fixed index), so a loss on distances to these means
    reaches whatever produced the points.
    """
    members = torch.nn.functional.one_hot(assignment, previous.shape[1]).to(points.dtype) \
        * _valid_weights(points, valid).unsqueeze(-1)                          # [G, M, K]
    counts = members.sum(1).unsqueeze(-1)                                       # [G, K, 1]
    # elementwise, not a matmul: autocast would run a matmul in half precision
    sums = (members.unsqueeze(-1) * points.unsqueeze(-2)).sum(1)                # [G, K, D]
    return torch.where(counts > 0, sums / counts.clamp_min(1.0), previous)


def spread_centroids(points: torch.Tensor, k: int, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Deterministic initial centroids ``[G, K, D]``: the valid points at evenly spaced ranks of their distance
    to the valid mean, from the most typical to the most atypical point (ours; for k = 2 that puts one centroid
    in the bulk and one on the most outlying point, where a small lesion-like cluster would start)."""
    weights = _valid_weights(points, valid)
    count = weights.sum(1, keepdim=True)                                        # [G, 1]
    mean = (points * weights.unsqueeze(-1)).sum(1, keepdim=True) / count.clamp_min(1.0).unsqueeze(-1)
    distance = (points - mean).pow(2).sum(-1).masked_fill(weights == 0, float("-inf"))
    order = distance.argsort(1)                                                 # invalid points first
    fractions = torch.linspace(0.0, 1.0, k, device=points.device)
    first_valid = points.shape[1] - count
    ranks = (first_valid + (fractions * (count - 1).clamp_min(0.0)).round()).long()   # [G, K]
    chosen = order.gather(1, ranks)
    return points.gather(1, chosen.unsqueeze(-1).expand(-1, -1, points.shape[-1]))


def kmeans(points: torch.Tensor, centroids: torch.Tensor, iterations: int,
           valid: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``iterations`` Lloyd steps from ``centroids``; returns the new centroids ``[G, K, D]`` and every point's
    nearest centroid ``[G, M]`` under them (ties: the lower index). Not differentiable (run under no_grad)."""
    for _ in range(iterations):
        centroids = cluster_means(points, squared_distances(points, centroids).argmin(-1), centroids, valid)
    return centroids, squared_distances(points, centroids).argmin(-1)
