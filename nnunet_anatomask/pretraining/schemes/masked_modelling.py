"""What masking schemes share: a mask ratio, the MAE step, cell-mask helpers and the mask figures (a mixin).

The default step is MAE's sequence (random_masking -> forward_encoder / forward_decoder -> forward_loss, He et al.,
CVPR 2022): ``select_mask`` returns a ``CellMask`` (the cells, and whatever ``loss`` and the picture need of the
choice), the masked model reconstructs, ``loss`` scores the masked cells. A scheme overrides ``select_mask`` (and
``loss``, or the whole ``step``). A scheme that masks nothing needs none of this (``base.Scheme``).
"""
import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Collection, Optional

import torch
from torch import nn

from nnunet_anatomask.pretraining import losses, masking
from nnunet_anatomask.pretraining.schemes.base import Picture, Ratio, Scheme, SchemeConfig, StepOutput


@dataclass(frozen=True)
class MaskingConfig(SchemeConfig):
    """A masking scheme's settings: the share of cells masked, and the optimiser (SchemeConfig)."""

    mask_ratio: Ratio = 0.6


def with_recipe_ratio(config: MaskingConfig, scheme_class: type, recipe_ratio: Optional[float],
                      overridden: Collection[str] = ()) -> MaskingConfig:
    """``config`` with the backbone recipe's mask ratio (Primus: nnssl's 0.75), unless the paper fixes the ratio
    (``ratio_from_paper``), the user set ``mask_ratio`` (``overridden``), or the recipe has none."""
    if recipe_ratio is None or getattr(scheme_class, "ratio_from_paper", True) or "mask_ratio" in overridden \
            or not hasattr(config, "mask_ratio"):
        return config
    return dataclasses.replace(config, mask_ratio=recipe_ratio)


@dataclass(frozen=True)
class CellMask:
    """``select_mask``'s choice: the cells (bool ``[B, N]``, True = masked) and per-cell maps ``{title: [B, N]}``
    for the picture; a scheme subclasses it to hand ``loss`` more of the choice (AnatoMask's hard cells)."""

    cells: torch.Tensor
    maps: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class GuidedMask(CellMask):
    """A mask guided by a teacher's per-cell scores ``[B, N]`` (AnatoMask's error, HPM's predicted loss), and the
    hard cells they chose ``[B, N]``; both None while the schedule asks for no hard cell (the teacher did not run)."""

    scores: Optional[torch.Tensor] = None
    hard: Optional[torch.Tensor] = None


class MaskedModelling:
    """Mixin for masking schemes (used with ``Scheme``: reads ``self.config``, ``self.grid``)."""

    def step(self, batch: dict, model: nn.Module, epoch: int) -> StepOutput:
        """MAE's step: select_mask -> masked forward -> loss; the runner does backward and the optimiser step."""
        images = batch["data"]
        mask = self.select_mask(images, epoch)
        prediction = model(images, self.grid_mask(mask.cells))
        loss, figures = self.loss(images, prediction, mask, epoch)
        return StepOutput(loss, figures, Picture(images, mask.cells, prediction.detach(), dict(mask.maps)))

    def ratio(self, epoch: int) -> float:
        """Masking ratio at this epoch (constant unless the paper schedules it)."""
        return self.config.mask_ratio

    def select_mask(self, images: torch.Tensor, epoch: int) -> CellMask:
        """The cells to mask in this batch, and what the loss and the picture need of that choice."""
        raise NotImplementedError

    def cell_difficulty(self, prediction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """How hard each cell was to reconstruct, [B, N], in the settings' ``difficulty_space``
        (losses.cell_difficulty: "normalized", the loss's own space, or "raw", the intensity missed)."""
        return losses.cell_difficulty(prediction, images, self.grid, self.config.difficulty_space)

    def loss(self, images: torch.Tensor, prediction: torch.Tensor, mask: CellMask,
             epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar loss and detached per-step figures to log; default: MSE on masked, normalised cells."""
        loss, _ = losses.reconstruction_loss(prediction, images, mask.cells, self.grid)
        return loss, self.mask_figures(images, mask.cells)

    def epoch_figures(self, epoch: int) -> dict[str, float]:
        return {"mask_ratio": self.ratio(epoch)}

    # --- helpers -------------------------------------------------------------------------------------
    def grid_mask(self, cell_mask: torch.Tensor) -> torch.Tensor:
        """[B, N] -> [B, *cells_per_axis], the shape the masked model takes."""
        return cell_mask.view(cell_mask.shape[0], *self.grid.cells_per_axis)

    def nothing_masked(self, images: torch.Tensor) -> torch.Tensor:
        """An all-visible cell mask [B, N] (the un-masked forward of a teacher or of cell features)."""
        return torch.zeros(images.shape[0], self.grid.num_cells, dtype=torch.bool, device=images.device)

    def random_key(self, images: torch.Tensor) -> torch.Tensor:
        """Uniform noise [B, N] on the batch's device; its ranks are the random part of every mask."""
        return torch.rand(images.shape[0], self.grid.num_cells, device=images.device)

    def n_masked(self, epoch: int) -> int:
        return masking.num_masked(self.grid.num_cells, self.ratio(epoch))

    def foreground_cells(self, images: torch.Tensor) -> torch.Tensor:
        """Bool [B, N]: cells where >= 1 % of channel-0 voxels exceed the foreground threshold (ours; no labels)."""
        bright = (images[:, :1] > self.foreground_threshold).float()
        return self.grid.patchify(bright).mean(dim=(-1, -2)) >= 0.01

    def mask_figures(self, images: torch.Tensor, cell_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Figures every masking scheme logs: the realised mask ratio and the share of masked cells on foreground."""
        foreground = self.foreground_cells(images).float()
        masked = cell_mask.float()
        return {"realised_ratio": masked.mean(),
                "masked_fg_share": (foreground * masked).sum() / masked.sum().clamp_min(1.0)}


class MaskingScheme(MaskedModelling, Scheme):
    """A masking scheme: subclasses set ``name`` and ``config_class`` and override ``select_mask``."""

    config_class = MaskingConfig
    # True where the paper fixes the ratio; otherwise a backbone recipe's ratio replaces the default mask_ratio
    # (Primus: nnssl's 0.75; with_recipe_ratio).
    ratio_from_paper: ClassVar[bool] = False
