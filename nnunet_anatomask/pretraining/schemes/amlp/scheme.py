"""AMLP (Wang, Wang, Lukasiewicz, Xu; arXiv 2309.04312): Adaptive (v2: Adjustable) Masking Lesion Patches.

Four parts, named by the paper's abstract: masked patch selection (MPS) by unsupervised clustering of cells into
lesion-like and background, masking lesion-like cells preferentially; an attention reconstruction loss (ARL; v2:
relative reconstruction loss) that weights hard-to-reconstruct cells up; a category consistency loss (CCL) that
makes a cell's category agree with its reconstruction difficulty; an adaptive masking ratio (AMR) that rises
over pretraining. There is no official code and only the abstract could be read here, so every formula here and in
categories.py and terms.py is ours, faithful to that description, and written down in docs/amlp.md. Each part is
switched by a setting (use_mps, use_arl, use_ccl, use_amr): an ablation is a scheme config, not a class.
"""
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn

from nnunet_anatomask.pretraining import clustering, losses, masking, schedules
import nnunet_anatomask.pretraining.schemes.amlp.categories as mps
from nnunet_anatomask.pretraining.schemes.amlp.terms import arl_weights, consistency_loss, hard_cells, weight_entropy
from nnunet_anatomask.pretraining.schemes.base import (DifficultySpace, NonNegative, Picture, Positive, Ratio, Share,
                                                       StepOutput, at_least)
from nnunet_anatomask.pretraining.schemes.masked_modelling import MaskingConfig, MaskingScheme


@dataclass(frozen=True)
class AMLPConfig(MaskingConfig):
    use_mps: bool = True  # the paper's four parts; an ablation switches one off
    use_arl: bool = True
    use_ccl: bool = True
    use_amr: bool = True
    ratio_start: Ratio = 0.25  # AMR (ours: linear from ratio_start to ratio_end)
    ratio_end: Ratio = 0.75
    mask_ratio: Ratio = 0.5  # without AMR: the ramp's mean (ours)
    cell_features: Literal["blob", "intensity", "encoder"] = "blob"  # MPS (ours): categories.py, docs/amlp.md
    clusters: at_least(2) = 2
    kmeans_iterations: at_least(1) = 3
    lesion_share: Share = 0.5  # share of the masked cells drawn from the lesion-like cluster
    background_order: Literal["likeness", "random"] = "likeness"  # the rest: more lesion-like first, or random (ours)
    arl_temperature: Positive = 1.0  # ARL (ours): relative to the sample's mean masked loss
    difficulty_space: DifficultySpace = "normalized"  # of ARL's weights and CCL's hard cells (measured, docs/amlp.md)
    ccl_weight: NonNegative = 0.1  # CCL (ours): weight in the total loss, temperature of the soft assignment
    ccl_temperature: Positive = 1.0


class AMLPScheme(MaskingScheme):
    """AMLP: clustering-based lesion-cell masking, attention reconstruction loss, category consistency loss,
    adaptive masking ratio."""

    name, config_class, ratio_from_paper = "AMLP", AMLPConfig, True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        c = self.config
        stats = len(mps.STATISTIC_NAMES.get(c.cell_features, ())) or self.student.cell_channels
        self.metric_logits = nn.Parameter(torch.zeros(stats), requires_grad=c.use_ccl)  # CCL's metric (ours)
        self.register_buffer("centroids", torch.zeros(0))  # [1, K, D], made at the first step (D from data)

    def ratio(self, epoch: int) -> float:
        """AMR: r(e) = r0 + (r1 - r0) e / (E - 1) (schedules.linear_ratio); mask_ratio when AMR is off."""
        c = self.config
        return schedules.linear_ratio(epoch, self.total_epochs, c.ratio_start, c.ratio_end) if c.use_amr \
            else c.mask_ratio

    def raw_cell_features(self, images: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """Per-cell features ``[B, N, G, S]``: from the image (categories.IMAGE_FEATURES), or the un-masked
        student's encoder at the cells' resolution (G = 1 x S channels, no gradient)."""
        if self.config.cell_features in mps.IMAGE_FEATURES:
            return mps.IMAGE_FEATURES[self.config.cell_features](images, self.grid)
        with torch.no_grad():  # the encoder alone
            cells = model.encode(images, self.grid_mask(self.nothing_masked(images))).cells
        return cells.float().flatten(2).transpose(1, 2).unsqueeze(2)           # [B, N, 1, C]

    def categorise(self, images: torch.Tensor, model: nn.Module) -> mps.Categories:
        """MPS's clustering of this batch's cells: features -> cluster space -> warm-started k-means, keeping the
        centroids (buffer, saved in scheme_state; spread_centroids at the first step or a changed feature size)."""
        points = mps.cluster_space(self.raw_cell_features(images, model), mps.metric_weights(self.metric_logits))
        c = self.config
        with torch.no_grad():
            if self.centroids.shape != (1, c.clusters, points.shape[-1]):
                self.centroids = clustering.spread_centroids(points.detach(), c.clusters)
            self.centroids, assignment = clustering.kmeans(points.detach(), self.centroids, c.kmeans_iterations)
        index, lesion_like = mps.lesion_like(points, assignment, c.clusters, images.shape[0],
                                             most_focal=c.cell_features == "blob")
        return mps.Categories(points, assignment, index, lesion_like)

    def select_cells(self, lesion_like: torch.Tensor, key: torch.Tensor, epoch: int,
                     likeness: Optional[torch.Tensor] = None) -> torch.Tensor:
        """MPS: round(lesion_share * n) masked cells from the lesion-like cluster (as many as it holds), the rest
        from the background (masking.preferential_mask), the more lesion-like first by ``likeness`` [B, N] (CCL's q)
        mixed with the random key (background_order "likeness", ours); uniformly random without MPS."""
        n_masked = self.n_masked(epoch)
        if not self.config.use_mps:
            return masking.random_mask(key, n_masked)
        if likeness is not None and self.config.background_order == "likeness":
            key = masking.ranked_key(likeness, key, mps.BACKGROUND_KEY_WEIGHT)
        return masking.preferential_mask(lesion_like, key, n_masked, round(self.config.lesion_share * n_masked))

    def step(self, batch: dict, model: nn.Module, epoch: int) -> StepOutput:
        """Cluster the batch's cells, mask (MPS), reconstruct, then ARL (or MSE) + ccl_weight x CCL."""
        images, c = batch["data"], self.config
        key = self.random_key(images)  # drawn first: without MPS the mask is RandomMask's for the same seed
        categories = self.categorise(images, model) if c.use_mps or c.use_ccl else None
        lesion_like = categories.lesion_like if categories else torch.zeros_like(key, dtype=torch.bool)
        q = mps.soft_category(categories, self.centroids, c.ccl_temperature) if categories else None
        cell_mask = self.select_cells(lesion_like, key, epoch, q.detach() if q is not None else None)
        prediction = model(images, self.grid_mask(cell_mask))
        errors = losses.per_cell_error(prediction, images, self.grid)
        difficulty = self.cell_difficulty(prediction.detach(), images)  # ARL's weights and CCL's hard cells
        loss, figures, maps = self.reconstruction_term(errors, difficulty, cell_mask)
        figures.update(self.mask_figures(images, cell_mask))
        if categories is not None:
            figures.update(mps.cluster_figures(lesion_like, cell_mask))
            maps = {"lesion-like cluster": lesion_like.float(), **maps}
        if c.use_ccl:  # CCL between q (with gradient) and this step's hard cells
            hard = hard_cells(difficulty, cell_mask, c.kmeans_iterations)
            ccl = consistency_loss(q, hard, cell_mask)
            loss = loss + c.ccl_weight * ccl
            figures["ccl"] = ccl.detach()
            figures["hard_lesion_like_share"] = (hard & lesion_like).sum() / hard.sum().clamp_min(1)
            maps["hard (CCL)"] = hard.float()
        return StepOutput(loss, figures, Picture(images, cell_mask, prediction.detach(), maps))

    def reconstruction_term(self, errors: torch.Tensor, difficulty: torch.Tensor,
                            cell_mask: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
        """ARL (or plain masked MSE without it): the loss's per-cell errors weighted by their difficulty, its
        figures and the ARL weight map."""
        mse = losses.masked_mean(errors, cell_mask)
        if not self.config.use_arl:
            return mse, {"mse": mse.detach()}, {}
        weights, p = arl_weights(difficulty, cell_mask, self.config.arl_temperature)
        figures = {"mse": mse.detach(), "arl_weight_entropy": weight_entropy(p, cell_mask)}
        return losses.masked_mean(weights * errors, cell_mask), figures, {"ARL weight": weights}

    def epoch_figures(self, epoch: int) -> dict[str, float]:
        """Masking ratio (AMR) and, for blob or intensity features with CCL, the learned weight of each statistic."""
        figures = super().epoch_figures(epoch)
        names = mps.STATISTIC_NAMES.get(self.config.cell_features)
        if self.config.use_ccl and names:
            weights = mps.metric_weights(self.metric_logits).detach().cpu().tolist()
            figures.update({f"metric_weight_{s}": w for s, w in zip(names, weights)})
        return figures

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """The centroids' shape is known only from data: take the saved one before loading it."""
        saved = state_dict.get(prefix + "centroids")
        if saved is not None:
            self.centroids = torch.empty_like(saved, device=self.centroids.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
