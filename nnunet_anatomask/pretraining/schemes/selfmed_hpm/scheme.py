"""SelfMedHPM: masked autoencoding with a loss predictor that mines hard cells (HPM, Wang et al., CVPR 2023,
Haochen-Wang409/HPM; a 3D ViT port in JiaxinZhuang/MiM). Method, defaults and what is ours: docs/selfmedhpm.md.

Per step: an EMA teacher of the student and its loss predictor runs on the un-masked patch and predicts every
cell's reconstruction loss; the student masks the alpha * n_masked predicted-hardest cells plus random others
(HPM ``generate_mask``), reconstructs (L_rec) and its own predictor learns to rank the masked cells by their
actual, detached reconstruction loss (HPM ``forward_learning_loss(relative=True)``, L_pred). L = L_rec + L_pred.
"""
from dataclasses import dataclass

import torch
from torch import nn

from nnunet_anatomask.pretraining import losses, masking, schedules
from nnunet_anatomask.pretraining.schemes.base import (DifficultySpace, NonNegative, Picture, Positive, Ratio, Share,
                                                       StepOutput, at_least)
from nnunet_anatomask.pretraining.schemes.masked_modelling import GuidedMask, MaskingConfig, MaskingScheme
from nnunet_anatomask.pretraining.schemes.selfmed_hpm.predictor import CellLossPredictor
from nnunet_anatomask.pretraining.schemes.selfmed_hpm.ranking import (ranked_cells, ranking_accuracy,
                                                                      relative_ranking_loss, spearman)
from nnunet_anatomask.pretraining.teacher import EMATeacher


@dataclass(frozen=True)
class SelfMedHPMConfig(MaskingConfig):
    mask_ratio: Ratio = 0.75  # HPM mask_ratio
    alpha_max: float = 0.5  # HPM generate_mask: keep_ratio = (epoch + 1) / total_epoch * 0.5
    momentum_start: float = 0.999  # HPM: 0.999 -> 0.9999 over 100 of 800 epochs
    momentum_end: float = 0.9999
    momentum_ramp_fraction: float = 1 / 8
    predictor_hidden: at_least(1) = 128  # ours
    max_ranked_cells: at_least(2) = 2048  # ours: at most this many masked cells per image enter the pairwise loss
    # HPM ranks the cells by their raw reconstruction loss (norm_pix_loss=False in main_pretrain.py); our
    # reconstruction loss stays per-cell normalised, the ranking target is its error on intensities.
    difficulty_space: DifficultySpace = "raw"
    # HPM's optimiser (main_pretrain.py): AdamW (0.9, 0.95), wd 0.05, warm-up 40 of 800 epochs, cosine to 0;
    # an absolute lr of 1e-4 instead of 1.5e-4 * batch / 256 (~1e-6 at nnU-Net's batch 2; ours).
    base_lr: Positive = 1e-4
    min_lr: NonNegative = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: NonNegative = 0.05
    warmup_fraction: Share = 0.05
    decay_norms_and_biases: bool = False  # HPM main_pretrain.py: timm's add_weight_decay exempts biases and norms


class SelfMedHPMScheme(MaskingScheme):
    name, config_class, ratio_from_paper = "SelfMedHPM", SelfMedHPMConfig, True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        c = self.config
        self.predictor = CellLossPredictor(self.student.decoder_channels, self.grid, c.predictor_hidden)
        # HPM: the EMA covers the whole model, reconstruction and loss-predictor branches alike
        self.ema = EMATeacher(self, {"teacher": self.student, "teacher_predictor": self.predictor},
                              self.total_epochs, c.momentum_start, c.momentum_end, c.momentum_ramp_fraction)

    def alpha(self, epoch: int) -> float:
        """alpha = 0.5 * (e + 1) / E (schedules.hard_fraction_hpm)."""
        return schedules.hard_fraction_hpm(epoch, self.total_epochs, self.config.alpha_max)

    def n_hard(self, epoch: int) -> int:
        """HPM: int(n_masked * alpha) predicted-hardest cells."""
        return int(self.n_masked(epoch) * self.alpha(epoch))

    @torch.no_grad()
    def teacher_predictions(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's predicted loss ``[B, N]`` of every cell, from the un-masked patch (HPM: ``model_ema.ema(
        samples, mask=visible_mask)`` with nothing masked)."""
        features = self.ema(images, self.grid_mask(self.nothing_masked(images)), features=True).decoder_features
        return self.teacher_predictor(features).float()

    def select_mask(self, images: torch.Tensor, epoch: int) -> GuidedMask:
        """The n_hard cells the teacher predicts hardest plus random others; a random mask while n_hard = 0
        (the teacher forward is then skipped)."""
        key = self.random_key(images)  # drawn first: n_hard = 0 gives RandomMask's mask for the same seed
        n_masked, n_hard = self.n_masked(epoch), self.n_hard(epoch)
        if n_hard == 0:
            return GuidedMask(masking.random_mask(key, n_masked))
        scores = self.teacher_predictions(images)
        return GuidedMask(masking.guided_mask(scores, key, n_masked, n_hard), {}, scores)

    def step(self, batch: dict, model: nn.Module, epoch: int) -> StepOutput:
        """Teacher ranks -> student mask -> masked forward with features -> L_rec + L_pred (HPM engine_pretrain)."""
        images = batch["data"]
        mask = self.select_mask(images, epoch)
        cell_mask = mask.cells
        out = model(images, self.grid_mask(cell_mask), features=True)
        reconstruction_loss, _ = losses.reconstruction_loss(out.reconstruction, images, cell_mask, self.grid)
        errors = self.cell_difficulty(out.reconstruction.detach(), images)  # the ranking target (raw, as HPM)
        predicted = self.predictor(out.decoder_features)
        ranked = ranked_cells(cell_mask, self.n_masked(epoch), self.config.max_ranked_cells)
        ranked_predicted, ranked_errors = predicted.gather(1, ranked), errors.gather(1, ranked)
        prediction_loss = relative_ranking_loss(ranked_predicted, ranked_errors)
        figures = {**self.mask_figures(images, cell_mask), "reconstruction_loss": reconstruction_loss.detach(),
                   "ranking_loss": prediction_loss.detach(),
                   "rank_accuracy": ranking_accuracy(ranked_predicted, ranked_errors),
                   "spearman": spearman(ranked_predicted, ranked_errors)}
        maps = {"predicted loss (student)": predicted.detach().float(),
                f"actual loss ({self.config.difficulty_space}, masked cells)": torch.where(cell_mask, errors, 0.0)}
        if mask.scores is not None:  # how well the ranking that chose the hard cells orders the actual losses
            teacher_ranked = mask.scores.gather(1, ranked)
            figures.update({"teacher_rank_accuracy": ranking_accuracy(teacher_ranked, ranked_errors),
                            "teacher_spearman": spearman(teacher_ranked, ranked_errors)})
            maps["predicted loss (teacher, un-masked)"] = mask.scores
        picture = Picture(images, cell_mask, out.reconstruction.detach(), maps)
        return StepOutput(reconstruction_loss + prediction_loss, figures, picture)

    def epoch_figures(self, epoch: int) -> dict[str, float]:
        return {**super().epoch_figures(epoch), "alpha": self.alpha(epoch), **self.ema.figures(epoch)}
