"""AnatoMask (Li et al., ECCV 2024; ricklisz/AnatoMask): reconstruction-guided self-masking.

An EMA teacher reconstructs the batch under its own random mask; its per-cell error is the significance
score. The student masks the alpha * n_masked highest-scoring cells plus random other cells, with alpha
growing over training (masking dynamics). Defaults: docs/anatomask.md, read from the official code.
"""
from dataclasses import dataclass
from typing import Literal

import torch

from nnunet_anatomask.pretraining import masking, schedules
from nnunet_anatomask.pretraining.schemes.base import DifficultySpace, Ratio, at_least
from nnunet_anatomask.pretraining.schemes.masked_modelling import GuidedMask, MaskingConfig, MaskingScheme
from nnunet_anatomask.pretraining.teacher import EMATeacher


@dataclass(frozen=True)
class AnatoMaskConfig(MaskingConfig):
    teacher_ratio: Ratio = 0.6
    alpha_max: float = 0.5
    momentum_start: float = 0.999
    momentum_end: float = 0.9999
    momentum_ramp_fraction: float = 0.25
    error_map: Literal["random", "complementary"] = "random"  # ours: complementary_k teacher masks cover every cell
    complementary_k: at_least(2) = 2
    difficulty_space: DifficultySpace = "raw"  # teacher error on intensities, as the official code (the loss: not)


class AnatoMaskScheme(MaskingScheme):
    name, config_class, ratio_from_paper = "AnatoMask", AnatoMaskConfig, True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        c = self.config
        self.ema = EMATeacher(self, {"teacher": self.student}, self.total_epochs, c.momentum_start, c.momentum_end,
                              c.momentum_ramp_fraction)

    def alpha(self, epoch: int) -> float:
        """alpha = 0.5 * min(1, e / (E - 1)); 0 when E = 1 (schedules.hard_fraction_anatomask)."""
        return schedules.hard_fraction_anatomask(epoch, self.total_epochs, self.config.alpha_max)

    @torch.no_grad()
    def teacher_scores(self, images: torch.Tensor) -> torch.Tensor:
        """Per-cell teacher error [B, N] in ``difficulty_space``, 0 on cells the teacher saw."""
        c = self.config
        if c.error_map == "complementary":
            teacher_masks = masking.complementary_masks(self.random_key(images), c.complementary_k)
        else:
            n = masking.num_masked(self.grid.num_cells, c.teacher_ratio)
            teacher_masks = masking.random_mask(self.random_key(images), n)[None]
        scores = torch.zeros(images.shape[0], self.grid.num_cells, device=images.device)
        for teacher_mask in teacher_masks:
            prediction = self.ema(images, self.grid_mask(teacher_mask))
            scores += self.cell_difficulty(prediction, images) * teacher_mask
        return scores

    def select_mask(self, images: torch.Tensor, epoch: int) -> GuidedMask:
        key = self.random_key(images)  # drawn first, so that alpha = 0 gives RandomMask's mask exactly
        n_masked = self.n_masked(epoch)
        n_hard = int(self.alpha(epoch) * n_masked)
        if n_hard == 0:  # the error map would not be used: skip the teacher forward
            return GuidedMask(masking.random_mask(key, n_masked))
        scores = self.teacher_scores(images)
        hard_cells = masking.hardest_cells(scores, key, n_hard)
        hard = torch.zeros_like(key, dtype=torch.bool).scatter_(1, hard_cells, True)
        cells = masking.mask_with_cells_first(hard_cells, key, n_masked)
        return GuidedMask(cells, {f"teacher error ({self.config.difficulty_space})": scores}, scores, hard)

    def loss(self, images: torch.Tensor, prediction: torch.Tensor, mask: GuidedMask, epoch: int) -> tuple:
        loss, figures = super().loss(images, prediction, mask, epoch)
        if mask.hard is not None:
            hard, masked, foreground = mask.hard.float(), mask.cells.float(), self.foreground_cells(images).float()
            figures["teacher_error"] = mask.scores.sum() / (mask.scores > 0).sum().clamp_min(1)
            figures["hard_fraction"] = (hard * masked).sum() / masked.sum()
            figures["hard_fg_overlap"] = (hard * foreground).sum() / hard.sum().clamp_min(1.0)
        return loss, figures

    def epoch_figures(self, epoch: int) -> dict[str, float]:
        return {**super().epoch_figures(epoch), "alpha": self.alpha(epoch), **self.ema.figures(epoch)}
