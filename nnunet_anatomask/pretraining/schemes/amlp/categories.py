"""AMLP's masked patch selection (MPS) and the soft category of CCL: cells clustered into lesion-like and background.

Every formula is ours, faithful to the paper's abstract (arXiv 2309.04312; no official code): docs/amlp.md.
"""
from typing import NamedTuple

import torch

from nnunet_anatomask.pretraining import blobs, clustering, distributed, losses
from nnunet_anatomask.pretraining.grid import MaskGrid

INTENSITY_STATISTICS = ("mean", "std", "max")  # per cell and channel (ours, docs/amlp.md)
BLOB_SCALES = (1.0, 1.5, 2.0)  # Gaussian scales of the blob strength, in voxels (ours, docs/amlp.md)
BLOB_REACH = 1  # a cell counts a blob centred up to this many voxels outside it (ours)
BACKGROUND_KEY_WEIGHT = 0.5  # MPS's background order: the random key's weight against q's rank (ours, docs/amlp.md)
STATISTIC_NAMES = {"intensity": INTENSITY_STATISTICS, "blob": tuple(f"blob_sigma{s:g}" for s in BLOB_SCALES)}


class Categories(NamedTuple):
    """One step's clustering: points ``[1, B N, D]`` (with gradient to the metric), cluster of each point
    ``[1, B N]``, index of the lesion-like cluster ``[1]``, its cells ``[B, N]``."""

    points: torch.Tensor
    assignment: torch.Tensor
    index: torch.Tensor
    lesion_like: torch.Tensor


def intensity_features(images: torch.Tensor, grid: MaskGrid) -> torch.Tensor:
    """``[B, N, C, 3]``: per cell and channel the mean, std and max intensity (INTENSITY_STATISTICS)."""
    mean, std = losses.cell_statistics(images, grid)             # [B, N, C, 1] each
    peak = grid.patchify(images.float()).amax(-1, keepdim=True)
    return torch.cat([mean, std, peak], dim=-1)


@torch.no_grad()
def blob_features(images: torch.Tensor, grid: MaskGrid) -> torch.Tensor:
    """``[B, N, C, S]``: per cell, channel and scale, the largest blob strength (blobs.blob_strength) within
    BLOB_REACH voxels of the cell (a lesion cut by a cell border still marks both cells; ours)."""
    pool = torch.nn.functional.max_pool3d if grid.ndim == 3 else torch.nn.functional.max_pool2d
    per_scale = [pool(blobs.blob_strength(images, sigma), 2 * BLOB_REACH + 1, 1, BLOB_REACH) for sigma in BLOB_SCALES]
    return torch.stack([grid.patchify(b).amax(-1) for b in per_scale], dim=-1)


# MPS's cell features from the image (ours, docs/amlp.md): "blob", each cell's strongest compact bright or dark
# spot at BLOB_SCALES (lesion-like = the most focal cluster); "intensity", mean, std and max (lesion-like = the
# smallest cluster). The scheme's third choice, "encoder", is the un-masked student's encoder.
IMAGE_FEATURES = {"blob": blob_features, "intensity": intensity_features}


def metric_weights(logits: torch.Tensor) -> torch.Tensor:
    """w = S softmax(logits): one weight per statistic, mean 1 (CCL can only move weight between them)."""
    return logits.numel() * logits.softmax(0)


def cluster_space(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``[B, N, G, S]`` -> points ``[1, B N, G S]``: every feature standardised over the batch's cells, then
    scaled by sqrt(w_s / D), so squared distances are the w-weighted mean over the D features (ours)."""
    mean = features.mean(dim=(0, 1), keepdim=True)
    std = features.std(dim=(0, 1), keepdim=True).clamp_min(1e-6)
    scale = (weights / (features.shape[2] * features.shape[3])).sqrt()
    standardised = (features - mean) / std * scale
    return standardised.reshape(1, -1, features.shape[2] * features.shape[3])


@torch.no_grad()
def lesion_like(points: torch.Tensor, assignment: torch.Tensor, clusters: int, batch: int,
                most_focal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The lesion-like cluster (ours): with ``most_focal`` (blob features) the one whose cells have the highest mean
    cluster-space coordinate, otherwise the smallest (lesions are the minority). Sizes and sums are taken over every
    DDP rank's cells, so all ranks choose the same cluster. Returns its index ``[1]`` and the bool map ``[B, N]`` of
    this rank's cells in it."""
    members = torch.nn.functional.one_hot(assignment, clusters).to(points.dtype)  # [1, M, K]
    sizes = distributed.all_reduce_sum(members.sum(1))                             # [1, K]
    if most_focal:
        sums = distributed.all_reduce_sum((members * points.detach().mean(-1, keepdim=True)).sum(1))
        index = torch.where(sizes > 0, sums / sizes.clamp_min(1.0), float("-inf")).argmax(1)
    else:
        index = sizes.argmin(1)
    return index, (assignment == index[:, None]).view(batch, -1)


def soft_category(categories: Categories, centroids: torch.Tensor, temperature: float) -> torch.Tensor:
    """q ``[B, N]``: softmax over clusters of -d^2 / T_q, probability of the lesion-like cluster. The centroids are
    the means of this step's clusters recomputed from the points with gradient, so that CCL reaches the metric
    weights through both the points and the centroids (ours)."""
    points, index = categories.points, categories.index
    means = clustering.cluster_means(points, categories.assignment, centroids)
    logits = -clustering.squared_distances(points, means) / temperature   # [1, M, K]
    q = logits.softmax(-1).gather(-1, index.view(1, 1, 1).expand(1, logits.shape[1], 1))
    return q.view(categories.lesion_like.shape)


def cluster_figures(lesion_like: torch.Tensor, cell_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The lesion-like cluster's share of the cells and of the masked cells (figures of the stage-1 log)."""
    lesion, masked = lesion_like.float(), cell_mask.float()
    return {"lesion_cluster_size": lesion.mean(),
            "masked_lesion_like_share": (lesion * masked).sum() / masked.sum().clamp_min(1.0)}
