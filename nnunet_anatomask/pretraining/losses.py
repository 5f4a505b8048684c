"""Reconstruction losses shared by every scheme: per-cell normalised targets, MSE on masked cells.

MAE (`models_mae.py`, forward_loss with norm_pix_loss) and SparK normalise each patch by its own mean and
variance; here a "patch" is one mask cell, per channel.
"""
import torch

from nnunet_anatomask.pretraining.grid import MaskGrid

NORM_EPS = 1e-6  # MAE's and SparK's epsilon


def cell_statistics(images: torch.Tensor, grid: MaskGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (MAE: sqrt(var + 1e-6), unbiased var) of every cell and channel: [B, N, C, 1] each."""
    cells = grid.patchify(images.float())
    mean = cells.mean(dim=-1, keepdim=True)
    std = (cells.var(dim=-1, keepdim=True) + NORM_EPS) ** 0.5
    return mean, std


def normalized_target(images: torch.Tensor, grid: MaskGrid) -> torch.Tensor:
    """The reconstruction target: every cell of every channel normalised to zero mean, unit variance."""
    mean, std = cell_statistics(images, grid)
    return (grid.patchify(images.float()) - mean) / std


def per_cell_error(prediction: torch.Tensor, images: torch.Tensor, grid: MaskGrid) -> torch.Tensor:
    """Mean squared error of every cell against its normalised target: [B, N] (mean over channels, voxels)."""
    diff = grid.patchify(prediction.float()) - normalized_target(images, grid)
    return diff.pow(2).mean(dim=(-1, -2))


def masked_mean(cell_values: torch.Tensor, cell_mask: torch.Tensor) -> torch.Tensor:
    """Mean of per-cell values [B, N] over the masked cells (MAE: (loss * mask).sum() / mask.sum())."""
    weights = cell_mask.reshape(cell_values.shape).to(cell_values.dtype)
    return (cell_values * weights).sum() / weights.sum().clamp_min(1.0)


def reconstruction_loss(prediction: torch.Tensor, images: torch.Tensor, cell_mask: torch.Tensor,
                        grid: MaskGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """Scalar MSE on masked cells and the detached per-cell errors [B, N] (schemes log or rank them)."""
    errors = per_cell_error(prediction, images, grid)
    return masked_mean(errors, cell_mask), errors.detach()


def to_image_space(prediction: torch.Tensor, images: torch.Tensor, grid: MaskGrid) -> torch.Tensor:
    """Undo the per-cell normalisation of a prediction so it can be shown next to the input."""
    mean, std = cell_statistics(images, grid)
    return grid.unpatchify(grid.patchify(prediction.float()) * std + mean)
