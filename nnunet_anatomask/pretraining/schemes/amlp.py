"""AMLP (Wang, Wang, Lukasiewicz, Xu; arXiv 2309.04312): Adaptive (v2: Adjustable) Masking Lesion Patches.

Four parts, named by the paper's abstract: masked patch selection (MPS) by unsupervised clustering of cells into
lesion-like and background, masking lesion-like cells preferentially; an attention reconstruction loss (ARL; v2:
relative reconstruction loss) that weights hard-to-reconstruct cells up; a category consistency loss (CCL) that
makes a cell's category agree with its reconstruction difficulty; an adaptive masking ratio (AMR) that rises
over pretraining. There is no official code and only the abstract could be read here, so every formula below is
ours, faithful to that description, and written down in docs/amlp.md. Each part is switched by a class
attribute: an ablation is a subclass that changes one attribute and sets its own ``name`` (it then registers
as its own scheme and trainer).
"""
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from nnunet_anatomask.pretraining import blobs, clustering, distributed, losses, masking, schedules
from nnunet_anatomask.pretraining.schemes.base import MaskingScheme, Picture, StepOutput

INTENSITY_STATISTICS = ("mean", "std", "max")  # per cell and channel (ours, docs/amlp.md)
BLOB_SCALES = (1.0, 1.5, 2.0)  # Gaussian scales of the blob strength, in voxels (ours, docs/amlp.md)
BLOB_REACH = 1  # a cell counts a blob centred up to this many voxels outside it (ours)


class Categories(NamedTuple):
    """One step's clustering: points ``[1, B N, D]`` (with gradient to the metric), cluster of each point
    ``[1, B N]``, index of the lesion-like cluster ``[1]``, its cells ``[B, N]``."""

    points: torch.Tensor
    assignment: torch.Tensor
    index: torch.Tensor
    lesion_like: torch.Tensor


class AMLPScheme(MaskingScheme):
    """AMLP: clustering-based lesion-cell masking, attention reconstruction loss, category consistency loss,
    adaptive masking ratio."""

    name = "AMLP"
    # The paper's four parts; an ablation switches one off.
    use_mps: ClassVar[bool] = True
    use_arl: ClassVar[bool] = True
    use_ccl: ClassVar[bool] = True
    use_amr: ClassVar[bool] = True
    # AMR (ours: linear from ratio_start to ratio_end); without AMR the ratio is the ramp's mean (ours).
    ratio_start: ClassVar[float] = 0.25
    ratio_end: ClassVar[float] = 0.75
    mask_ratio = 0.5
    ratio_from_paper = True
    # MPS (ours): cell features, k-means, share of the masked cells drawn from the lesion-like cluster.
    # "blob": each cell's strongest compact bright or dark spot at BLOB_SCALES; lesion-like = the most focal
    # cluster. "intensity" (mean, std, max) or "encoder" (the student's un-masked encoder at the mask stage):
    # lesion-like = the smallest cluster (docs/amlp.md, "Which cells are lesion-like").
    cell_features: ClassVar[str] = "blob"
    clusters: ClassVar[int] = 2
    kmeans_iterations: ClassVar[int] = 3
    lesion_share: ClassVar[float] = 0.5
    # ARL (ours): temperature relative to the sample's mean masked loss.
    arl_temperature: ClassVar[float] = 1.0
    # ARL's weights and CCL's hard cells score difficulty in this space (chosen by measurement, docs/amlp.md).
    difficulty_space = "normalized"
    # CCL (ours): weight in the total loss, temperature of the soft cluster assignment.
    ccl_weight: ClassVar[float] = 0.1
    ccl_temperature: ClassVar[float] = 1.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._check_attributes()
        stats = {"intensity": len(INTENSITY_STATISTICS), "blob": len(BLOB_SCALES)}.get(
            self.cell_features) or self.student.encoder_channels[self.grid.mask_stage]
        # CCL's learnable part (ours): one weight per feature statistic in the clustering distance.
        self.metric_logits = nn.Parameter(torch.zeros(stats), requires_grad=self.use_ccl)
        self.register_buffer("centroids", torch.zeros(0))  # [1, K, D], made at the first step (D from data)

    def _check_attributes(self) -> None:
        if self.cell_features not in ("blob", "intensity", "encoder"):
            raise ValueError(f"{type(self).__name__}.cell_features must be 'blob', 'intensity' or 'encoder', got "
                             f"{self.cell_features!r}")
        if self.clusters < 2 or self.kmeans_iterations < 1:
            raise ValueError(f"{type(self).__name__} needs clusters >= 2 and kmeans_iterations >= 1, got "
                             f"{self.clusters} and {self.kmeans_iterations}")
        if not 0.0 <= self.lesion_share <= 1.0:
            raise ValueError(f"{type(self).__name__}.lesion_share must lie in [0, 1], got {self.lesion_share}")
        if self.arl_temperature <= 0 or self.ccl_temperature <= 0:
            raise ValueError(f"{type(self).__name__}: temperatures must be > 0, got arl_temperature "
                             f"{self.arl_temperature}, ccl_temperature {self.ccl_temperature}")

    # --- AMR ----------------------------------------------------------------------------------------------
    def ratio(self, epoch: int) -> float:
        """AMR: r(e) = r0 + (r1 - r0) e / (E - 1) (schedules.linear_ratio); mask_ratio when AMR is off."""
        if not self.use_amr:
            return self.mask_ratio
        return schedules.linear_ratio(epoch, self.total_epochs, self.ratio_start, self.ratio_end)

    # --- MPS ----------------------------------------------------------------------------------------------
    def metric_weights(self) -> torch.Tensor:
        """w = S softmax(logits): one weight per statistic, mean 1 (CCL can only move weight between them)."""
        return self.metric_logits.numel() * self.metric_logits.softmax(0)

    def raw_cell_features(self, images: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """Per-cell features ``[B, N, G, S]``: blob strengths (G channels x S scales), intensity statistics
        (G channels x S = mean, std, max) or the un-masked student's encoder features at the mask stage (G = 1 x S
        channels, no gradient)."""
        if self.cell_features == "blob":
            return self.blob_features(images)
        if self.cell_features == "intensity":
            mean, std = losses.cell_statistics(images, self.grid)             # [B, N, C, 1] each
            peak = self.grid.patchify(images.float()).amax(-1, keepdim=True)
            return torch.cat([mean, std, peak], dim=-1)
        with torch.no_grad():
            nothing_masked = torch.zeros(images.shape[0], self.grid.num_cells, dtype=torch.bool,
                                         device=images.device)
            skip = model(images, self.grid_mask(nothing_masked), features=True).encoder_skips[self.grid.mask_stage]
        return skip.float().flatten(2).transpose(1, 2).unsqueeze(2)           # [B, N, 1, C_k]

    @torch.no_grad()
    def blob_features(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, N, C, S]``: per cell, channel and scale, the largest blob strength (blobs.blob_strength) within
        BLOB_REACH voxels of the cell (a lesion cut by a cell border still marks both cells; ours)."""
        pool = torch.nn.functional.max_pool3d if self.grid.ndim == 3 else torch.nn.functional.max_pool2d
        per_scale = [pool(blobs.blob_strength(images, sigma), 2 * BLOB_REACH + 1, 1, BLOB_REACH)
                     for sigma in BLOB_SCALES]
        return torch.stack([self.grid.patchify(b).amax(-1) for b in per_scale], dim=-1)

    def cluster_space(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, N, G, S]`` -> points ``[1, B N, G S]``: every feature standardised over the batch's cells, then
        scaled by sqrt(w_s / D), so squared distances are the w-weighted mean over the D features (ours)."""
        mean = features.mean(dim=(0, 1), keepdim=True)
        std = features.std(dim=(0, 1), keepdim=True).clamp_min(1e-6)
        scale = (self.metric_weights() / (features.shape[2] * features.shape[3])).sqrt()
        standardised = (features - mean) / std * scale
        return standardised.reshape(1, -1, features.shape[2] * features.shape[3])

    @torch.no_grad()
    def cluster(self, points: torch.Tensor) -> torch.Tensor:
        """Warm-started k-means on ``[1, M, D]``; keeps the centroids (buffer, saved in scheme_state) and
        returns each point's cluster ``[1, M]``. First step (or a changed feature size): spread_centroids."""
        if self.centroids.shape != (1, self.clusters, points.shape[-1]):
            self.centroids = clustering.spread_centroids(points.detach(), self.clusters)
        self.centroids, assignment = clustering.kmeans(points.detach(), self.centroids, self.kmeans_iterations)
        return assignment

    @torch.no_grad()
    def lesion_like(self, points: torch.Tensor, assignment: torch.Tensor,
                    batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The lesion-like cluster (ours): with blob features the most focal one (highest mean cluster-space
        coordinate of its cells), otherwise the smallest (lesions are the minority). Sizes and sums are taken over
        every DDP rank's cells, so all ranks choose the same cluster. Returns its index ``[1]`` and the bool map
        ``[B, N]`` of this rank's cells in it."""
        members = torch.nn.functional.one_hot(assignment, self.clusters).to(points.dtype)  # [1, M, K]
        sizes = distributed.all_reduce_sum(members.sum(1))                                   # [1, K]
        if self.cell_features == "blob":
            sums = distributed.all_reduce_sum((members * points.detach().mean(-1, keepdim=True)).sum(1))
            index = torch.where(sizes > 0, sums / sizes.clamp_min(1.0), float("-inf")).argmax(1)
        else:
            index = sizes.argmin(1)
        return index, (assignment == index[:, None]).view(batch, -1)

    def select_cells(self, lesion_like: torch.Tensor, key: torch.Tensor, epoch: int) -> torch.Tensor:
        """MPS: round(lesion_share * n) masked cells from the lesion-like cluster (as many as it holds), the
        rest from the background (masking.preferential_mask); uniformly random without MPS."""
        n_masked = self.n_masked(epoch)
        if not self.use_mps:
            return masking.random_mask(key, n_masked)
        return masking.preferential_mask(lesion_like, key, n_masked, round(self.lesion_share * n_masked))

    # --- CCL ----------------------------------------------------------------------------------------------
    def soft_category(self, points: torch.Tensor, assignment: torch.Tensor, index: torch.Tensor,
                      batch: int) -> torch.Tensor:
        """q ``[B, N]``: softmax over clusters of -d^2 / T_q, probability of the lesion-like cluster. The
        centroids are the means of this step's clusters recomputed from ``points`` with gradient, so that CCL
        reaches the metric weights through both the points and the centroids (ours)."""
        centroids = clustering.cluster_means(points, assignment, self.centroids)
        logits = -clustering.squared_distances(points, centroids) / self.ccl_temperature   # [1, M, K]
        return logits.softmax(-1).gather(-1, index.view(1, 1, 1).expand(1, logits.shape[1], 1)).view(batch, -1)

    # --- the step -----------------------------------------------------------------------------------------
    def step(self, images: torch.Tensor, model: nn.Module, epoch: int) -> StepOutput:
        """Cluster the batch's cells, mask (MPS), reconstruct, then ARL (or MSE) + ccl_weight x CCL."""
        key = self.random_key(images)  # drawn first: without MPS the mask is RandomMask's for the same seed
        categories = self.categorise(images, model) if self.use_mps or self.use_ccl else None
        lesion_like = categories.lesion_like if categories else torch.zeros_like(key, dtype=torch.bool)
        cell_mask = self.select_cells(lesion_like, key, epoch)
        prediction = model(images, self.grid_mask(cell_mask))
        errors = losses.per_cell_error(prediction, images, self.grid)
        difficulty = self.cell_difficulty(prediction.detach(), images)  # ARL's weights and CCL's hard cells
        loss, figures, maps = self.reconstruction_term(errors, difficulty, cell_mask)
        figures.update(self.mask_figures(images, cell_mask))
        if categories is not None:
            lesion_f, mask_f = lesion_like.float(), cell_mask.float()
            figures["lesion_cluster_size"] = lesion_f.mean()
            figures["masked_lesion_like_share"] = (lesion_f * mask_f).sum() / mask_f.sum().clamp_min(1.0)
            maps = {"lesion-like cluster": lesion_f, **maps}
        if self.use_ccl:
            ccl, hard = self.consistency_term(categories, difficulty, cell_mask)
            loss = loss + self.ccl_weight * ccl
            figures["ccl"] = ccl.detach()
            figures["hard_lesion_like_share"] = (hard & lesion_like).sum() / hard.sum().clamp_min(1)
            maps["hard (CCL)"] = hard.float()
        return StepOutput(loss, figures, Picture(images, cell_mask, prediction.detach(), maps))

    def categorise(self, images: torch.Tensor, model: nn.Module) -> Categories:
        """MPS's clustering of this batch's cells (features -> cluster space -> warm-started k-means)."""
        points = self.cluster_space(self.raw_cell_features(images, model))
        assignment = self.cluster(points)
        index, lesion_like = self.lesion_like(points, assignment, images.shape[0])
        return Categories(points, assignment, index, lesion_like)

    def reconstruction_term(self, errors: torch.Tensor, difficulty: torch.Tensor,
                            cell_mask: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
        """ARL (or plain masked MSE without it): the loss's per-cell errors weighted by their difficulty (in
        ``difficulty_space``), its figures and the ARL weight map."""
        mse = losses.masked_mean(errors, cell_mask)
        if not self.use_arl:
            return mse, {"mse": mse.detach()}, {}
        weights, p = arl_weights(difficulty, cell_mask, self.arl_temperature)
        figures = {"mse": mse.detach(), "arl_weight_entropy": weight_entropy(p, cell_mask)}
        return losses.masked_mean(weights * errors, cell_mask), figures, {"ARL weight": weights}

    def consistency_term(self, categories: Categories, difficulty: torch.Tensor,
                         cell_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CCL between the soft category q and the hard cells of this step (by difficulty), and the hard cells."""
        hard = hard_cells(difficulty, cell_mask, self.kmeans_iterations)
        q = self.soft_category(categories.points, categories.assignment, categories.index, difficulty.shape[0])
        return consistency_loss(q, hard, cell_mask), hard

    # --- logs and checkpoints ----------------------------------------------------------------------------
    def epoch_figures(self, epoch: int) -> dict[str, float]:
        """Masking ratio (AMR) and, for blob or intensity features with CCL, the learned weight of each statistic."""
        figures = super().epoch_figures(epoch)
        names = {"intensity": INTENSITY_STATISTICS, "blob": [f"blob_sigma{s:g}" for s in BLOB_SCALES]}
        if self.use_ccl and self.cell_features in names:
            weights = self.metric_weights().detach().cpu().tolist()
            figures.update({f"metric_weight_{s}": w for s, w in zip(names[self.cell_features], weights)})
        return figures

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """The centroids' shape is known only from data: take the saved one before loading it."""
        saved = state_dict.get(prefix + "centroids")
        if saved is not None:
            self.centroids = torch.empty_like(saved, device=self.centroids.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# --- ARL and CCL, as functions of per-cell losses ----------------------------------------------------------------
def arl_weights(errors: torch.Tensor, cell_mask: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """ARL weights ``[B, N]`` on the masked cells of each sample b (0 elsewhere), and the softmax p (ours):
    p_bi = softmax_i(l_bi / (tau mean_b(l))) over masked i, w_bi = M_b p_bi, from detached losses l. Equal
    losses give w = 1, so sum(w l m) / sum(m) is then exactly the masked MSE: ARL has MSE's scale."""
    detached = errors.detach()
    mask_f = cell_mask.to(detached.dtype)
    count = mask_f.sum(1, keepdim=True).clamp_min(1.0)
    mean = (detached * mask_f).sum(1, keepdim=True) / count
    logits = (detached / (temperature * mean.clamp_min(1e-12))).masked_fill(~cell_mask, float("-inf"))
    p = logits.softmax(1)
    return p * count, p


def weight_entropy(p: torch.Tensor, cell_mask: torch.Tensor) -> torch.Tensor:
    """Entropy of each sample's ARL softmax over its M_b masked cells / log M_b, averaged (1 = uniform = MSE)."""
    plogp = torch.where(p > 0, p * p.clamp_min(1e-30).log(), 0.0).sum(1)
    return (-plogp / cell_mask.sum(1).to(p.dtype).clamp_min(2.0).log()).mean()


def hard_cells(errors: torch.Tensor, cell_mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """Reconstruction difficulty ``[B, N]`` (bool): 2-means on each sample's masked per-cell losses, started at
    their min and max; hard = nearer the higher centroid (ours). Equal losses: no cell is hard."""
    points = errors.detach().float().unsqueeze(-1)                              # [B, N, 1]
    visible = ~cell_mask.unsqueeze(-1)
    start = torch.cat([points.masked_fill(visible, float("inf")).amin(1, keepdim=True),
                       points.masked_fill(visible, float("-inf")).amax(1, keepdim=True)], 1)
    _, assignment = clustering.kmeans(points, start, iterations, valid=cell_mask)
    return (assignment == 1) & cell_mask


def consistency_loss(q: torch.Tensor, hard: torch.Tensor, cell_mask: torch.Tensor) -> torch.Tensor:
    """CCL = sum_i m_i (q_i - h_i)^2 / sum_i m_i over the masked cells, h_i = 1 for hard cells (ours): 0 when
    every masked cell's category agrees with its difficulty (lesion-like <-> hard)."""
    return losses.masked_mean((q - hard.to(q.dtype)).square(), cell_mask)
