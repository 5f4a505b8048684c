"""Reconstruction losses shared by every scheme: per-cell normalised targets, MSE on masked cells, and the space
in which a scheme scores how hard a cell is.

MAE (`models_mae.py`, forward_loss with norm_pix_loss) and SparK normalise each patch by its own mean and
variance; here a "patch" is one mask cell, per channel. nnssl's MAE and SparK losses, and HPM's default
(``norm_pix_loss=False``), use raw voxels instead; see each scheme's page in docs/ for which it follows.
"""
import torch

from nnunet_anatomask.pretraining.grid import MaskGrid

NORM_EPS = 1e-6  # MAE's and SparK's epsilon
# Where a scheme scores a cell's difficulty (docs/architecture.md, "How hard is a cell"): "normalized" is the loss's
# own per-cell normalised space; "raw" is the error of the prediction mapped back to the image's intensities.
DIFFICULTY_SPACES = ("normalized", "raw")


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


def cell_difficulty(prediction: torch.Tensor, images: torch.Tensor, grid: MaskGrid,
                    space: str) -> torch.Tensor:
    """How hard every cell was to reconstruct, [B, N], in ``space`` (one of DIFFICULTY_SPACES).

    "normalized": ``per_cell_error``, mean over channels c and voxels v of (p_cv - x̂_cv)², x̂ the per-cell
    normalised target. A flat prediction scores about 1 on every non-constant cell, faint or bright.
    "raw": the same error after mapping the prediction back to intensities (p·σ + μ, as ``to_image_space``), i.e.
    mean over c, v of (p_cv σ_c + μ_c - x_cv)² = mean over c of σ_c² · mean over v of (p_cv - x̂_cv)²: the
    intensity missed, as HPM's ranking target (``norm_pix_loss=False``) measures it.
    """
    if space not in DIFFICULTY_SPACES:
        raise ValueError(f"difficulty space must be one of {DIFFICULTY_SPACES}, got {space!r}")
    mean, std = cell_statistics(images, grid)
    squared = (grid.patchify(prediction.float()) - (grid.patchify(images.float()) - mean) / std).pow(2)
    if space == "raw":
        squared = squared * std.square()
    return squared.mean(dim=(-1, -2))


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
