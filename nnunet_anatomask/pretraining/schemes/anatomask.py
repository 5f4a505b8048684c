"""AnatoMask (Li et al., ECCV 2024; ricklisz/AnatoMask): reconstruction-guided self-masking.

An EMA teacher reconstructs the batch under its own random mask; its per-cell error is the significance
score. The student masks the alpha * n_masked highest-scoring cells plus random other cells, with alpha
growing over training (masking dynamics). Defaults: docs/anatomask.md, read from the official code.
"""
import torch

from nnunet_anatomask.pretraining import masking, schedules
from nnunet_anatomask.pretraining.schemes.base import MaskingScheme
from nnunet_anatomask.pretraining.teacher import ema_update_, make_teacher


class AnatoMaskScheme(MaskingScheme):
    name = "AnatoMask"
    mask_ratio = 0.6
    ratio_from_paper = True
    teacher_ratio = 0.6
    alpha_max = 0.5
    # The teacher's error map is scored on intensities, as the official code scores it against raw patches
    # (docs/anatomask.md); the student's loss stays per-cell normalised, as the official forward_loss.
    difficulty_space = "raw"
    momentum_start, momentum_end, momentum_ramp_fraction = 0.999, 0.9999, 0.25
    # Ours, off by default: "complementary" scores every cell with k complementary teacher masks.
    error_map = "random"
    complementary_k = 2

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.error_map not in ("random", "complementary"):
            raise ValueError(f"error_map must be 'random' or 'complementary', got {self.error_map!r}")
        self.teacher = make_teacher(self.student)
        self._teacher_forward = (self.teacher,)  # a tuple: a compiled wrapper must not join the state_dict
        self._hard = self._scores = None  # per-step scratch: select_mask -> loss

    def alpha(self, epoch: int) -> float:
        """alpha = 0.5 * min(1, e / (E - 1)); 0 when E = 1 (schedules.hard_fraction_anatomask)."""
        return schedules.hard_fraction_anatomask(epoch, self.total_epochs, self.alpha_max)

    def momentum(self, epoch: int) -> float:
        return schedules.ema_momentum(epoch, self.total_epochs, self.momentum_start, self.momentum_end,
                                      self.momentum_ramp_fraction)

    @torch.no_grad()
    def teacher_scores(self, images: torch.Tensor) -> torch.Tensor:
        """Per-cell teacher error [B, N] in ``difficulty_space`` (raw: the intensity missed); 0 on cells the
        teacher saw."""
        if self.error_map == "complementary":
            teacher_masks = masking.complementary_masks(self.random_key(images), self.complementary_k)
        else:
            teacher_n = masking.num_masked(self.grid.num_cells, self.teacher_ratio)
            teacher_masks = masking.random_mask(self.random_key(images), teacher_n)[None]
        scores = torch.zeros(images.shape[0], self.grid.num_cells, device=images.device)
        for teacher_mask in teacher_masks:
            prediction = self._teacher_forward[0](images, teacher_mask.view(-1, *self.grid.cells_per_axis))
            scores += self.cell_difficulty(prediction, images) * teacher_mask
        return scores

    def select_mask(self, images: torch.Tensor, epoch: int) -> torch.Tensor:
        key = self.random_key(images)  # drawn first, so that alpha = 0 gives RandomMask's mask exactly
        n_masked = self.n_masked(epoch)
        n_hard = int(self.alpha(epoch) * n_masked)
        if n_hard == 0:  # the error map would not be used: skip the teacher forward
            self.picture_maps, self._hard = {}, None
            return masking.random_mask(key, n_masked)
        scores = self.teacher_scores(images)
        hard_cells = masking.hardest_cells(scores, key, n_hard)
        hard = torch.zeros_like(key, dtype=torch.bool).scatter_(1, hard_cells, True)
        self.picture_maps, self._hard, self._scores = {f"teacher error ({self.difficulty_space})": scores}, hard, scores
        return masking.mask_with_cells_first(hard_cells, key, n_masked)

    def loss(self, images, prediction, cell_mask, epoch):
        loss, figures = super().loss(images, prediction, cell_mask, epoch)
        hard = getattr(self, "_hard", None)
        if hard is not None:
            hard_f = hard.float()
            foreground = self.foreground_cells(images).float()
            figures["teacher_error"] = self._scores.sum() / (self._scores > 0).sum().clamp_min(1)
            figures["hard_fraction"] = (hard_f * cell_mask).sum() / cell_mask.float().sum()
            figures["hard_fg_overlap"] = (hard_f * foreground).sum() / hard_f.sum().clamp_min(1.0)
        return loss, figures

    def compile_(self) -> None:
        """Compile the teacher's forward too (the runner compiles the student where nnU-Net compiles)."""
        self._teacher_forward = (torch.compile(self.teacher),)

    def on_step_end(self, epoch: int) -> None:
        ema_update_(self.teacher, self.student, self.momentum(epoch))

    def epoch_figures(self, epoch: int) -> dict[str, float]:
        return {**super().epoch_figures(epoch), "alpha": self.alpha(epoch), "teacher_momentum": self.momentum(epoch)}
