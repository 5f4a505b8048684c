"""The one interface every masking scheme implements (design §2), and what they share.

A scheme owns what is particular to a paper: how the mask is chosen, what the loss is, any extra state
(teacher, heads, centroids) and its optimiser defaults. The stage-1 loop (trainers/stage1.py) owns the rest.
"""
from typing import ClassVar

import torch
from torch import nn

from nnunet_anatomask.pretraining import losses, masking
from nnunet_anatomask.pretraining.grid import MaskGrid
from nnunet_anatomask.pretraining.masked_forward import MaskedReconstructionModel


class MaskingScheme(nn.Module):
    """Base class: subclasses set `name`, the defaults below, and override select_mask (and loss if needed).

    Submodules and buffers of a scheme (teacher, heads) form its `state_dict`, saved as `scheme_state`;
    the student model is held by reference only, its weights are the checkpoint's `network_weights`.
    """

    name: ClassVar[str] = "base"
    mask_ratio: ClassVar[float] = 0.6
    # Optimiser (AdamW) and schedule defaults, every length a fraction of the run.
    base_lr: ClassVar[float] = 1e-4
    min_lr: ClassVar[float] = 1e-6
    betas: ClassVar[tuple[float, float]] = (0.9, 0.999)
    weight_decay: ClassVar[float] = 1e-5
    warmup_fraction: ClassVar[float] = 0.02
    grad_clip: ClassVar[float] = 12.0

    def __init__(self, model: MaskedReconstructionModel, grid: MaskGrid, total_epochs: int,
                 foreground_threshold: float = 1.0):
        super().__init__()
        self._student = (model,)  # a tuple keeps it out of this module's parameters and state_dict
        self.grid = grid
        self.total_epochs = total_epochs
        self.foreground_threshold = foreground_threshold
        self.picture_maps: dict[str, torch.Tensor] = {}  # per-cell maps [B, N] for the stage-1 picture

    @property
    def student(self) -> MaskedReconstructionModel:
        return self._student[0]

    # --- the interface -------------------------------------------------------------------------------
    def ratio(self, epoch: int) -> float:
        """Masking ratio at this epoch (constant unless the paper schedules it)."""
        return self.mask_ratio

    def select_mask(self, images: torch.Tensor, epoch: int) -> torch.Tensor:
        """Bool [B, N] cell mask for this batch, True = masked."""
        raise NotImplementedError

    def loss(self, images: torch.Tensor, prediction: torch.Tensor, cell_mask: torch.Tensor,
             epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar loss and detached per-step figures to log; default: MSE on masked, normalised cells."""
        loss, _ = losses.reconstruction_loss(prediction, images, cell_mask, self.grid)
        return loss, self.mask_figures(images, cell_mask)

    def on_step_end(self, epoch: int) -> None:
        """Called after every optimiser step (teacher EMA, running statistics)."""

    def compile_(self) -> None:
        """torch.compile the scheme's own forward passes (teacher, heads); called where the student is compiled."""

    def epoch_figures(self, epoch: int) -> dict[str, float]:
        """Schedule values to log once per epoch."""
        return {"mask_ratio": self.ratio(epoch)}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters of the scheme's own heads that the stage-1 optimiser trains (none by default)."""
        return [p for p in self.parameters() if p.requires_grad]

    # --- shared helpers ------------------------------------------------------------------------------
    def random_key(self, images: torch.Tensor) -> torch.Tensor:
        """Uniform noise [B, N] on the batch's device; its ranks are the random part of every mask."""
        return torch.rand(images.shape[0], self.grid.num_cells, device=images.device)

    def foreground_cells(self, images: torch.Tensor) -> torch.Tensor:
        """Bool [B, N]: cells where >= 1 % of channel-0 voxels exceed the foreground threshold (ours; no labels)."""
        bright = (images[:, :1] > self.foreground_threshold).float()
        return self.grid.patchify(bright).mean(dim=(-1, -2)) >= 0.01

    def mask_figures(self, images: torch.Tensor, cell_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Figures every scheme logs: the realised mask ratio and the share of masked cells on foreground."""
        foreground = self.foreground_cells(images).float()
        masked = cell_mask.float()
        return {"realised_ratio": masked.mean(),
                "masked_fg_share": (foreground * masked).sum() / masked.sum().clamp_min(1.0)}

    def n_masked(self, epoch: int) -> int:
        return masking.num_masked(self.grid.num_cells, self.ratio(epoch))
