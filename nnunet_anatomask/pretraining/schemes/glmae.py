"""GL-MAE (Zhuang et al., arXiv 2306.08913, IEEE TMI 2025): global and local masked views, global-guided consistency.

Per step, from nnU-Net's crops of 5/3 x the plans' patch: global views (the crop resized to the patch) and local
views (patch-sized boxes of the same crops), all masked and reconstructed; an EMA teacher embeds the un-masked global
view; G2G ties the student's masked-global embedding to it, G2L each local embedding. The paper's pretraining code
is not released (JiaxinZhuang/GL-MAE holds fine-tuning code only): every choice below that its figure does not show
is ours, with its reason in docs/glmae.md.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_anatomask.pretraining import losses, masking, views
from nnunet_anatomask.pretraining.schemes.base import CropScale, NonNegative, Picture, Ratio, StepOutput, at_least
from nnunet_anatomask.pretraining.schemes.masked_modelling import MaskingConfig, MaskingScheme
from nnunet_anatomask.pretraining.teacher import EMATeacher

BOX_MAP = "local crop boxes"  # the picture's per-cell map: where the local view lies in the global view
LAYOUT_BINS = 2  # sub-boxes per axis of the embedding's layout readout (ours)


def embedding_head(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    """Linear -> LayerNorm -> GELU -> Linear (BYOL's projector with LayerNorm for BatchNorm: the global views of a
    step are one or a few, too few for batch statistics; ours)."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.LayerNorm(hidden), nn.GELU(),
                         nn.Linear(hidden, out_features))


def consistency(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """BYOL's loss (Grill et al., 2020, eq. 2) per row of ``[n, D]``: ||s/|s| - t/|t|||^2 = 2 - 2 cos(s, t), in
    [0, 4], 0 when the directions agree; the teacher is a target (detached: no gradient reaches it)."""
    return (F.normalize(student.float(), dim=-1) - F.normalize(teacher.detach().float(), dim=-1)).square().sum(-1)


def global_guided_consistency(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(G2G, G2L) of student embeddings ``[G + L, D]`` (G global views, then L local views; local j is cut from the
    crop of global view j) against the teacher's embeddings of the G un-masked global views ``[G, D]``."""
    n_global = teacher.shape[0]
    g2g = consistency(student[:n_global], teacher).mean()
    g2l = consistency(student[n_global:], teacher[:student.shape[0] - n_global]).mean()
    return g2g, g2l


@dataclass(frozen=True)
class GLMAEConfig(MaskingConfig):
    mask_ratio: Ratio = 0.6  # ours: RandomMask's ratio, so a comparison isolates the views and consistency
    crop_scale: CropScale = 5 / 3  # the paper's figure: global 160³ for a 96³ network input
    lambda_g2g: NonNegative = 1.0  # ours: iBOT weighs its patch and [CLS] distillation losses 1:1 with each other
    lambda_g2l: NonNegative = 1.0
    momentum_start: float = 0.996  # ours: BYOL / DINO; linear over the whole run
    momentum_end: float = 1.0
    head_hidden: at_least(1) = 1024  # ours: BYOL's 4096 / 256, scaled down
    embedding_dim: at_least(1) = 256


class GLMAEScheme(MaskingScheme):
    """GL-MAE on the plans' network: views share the plans' batch (half global, half local views)."""

    name, config_class = "GLMAE", GLMAEConfig
    min_batch = 2  # one global and one local view

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        c = self.config
        channels = self.student.encoder_channels[-1] * LAYOUT_BINS ** self.grid.ndim
        self.projector = embedding_head(channels, c.head_hidden, c.embedding_dim)
        self.predictor = embedding_head(c.embedding_dim, c.head_hidden, c.embedding_dim)  # BYOL's; ours
        self.ema = EMATeacher(self, {"teacher": self.student, "teacher_projector": self.projector},
                              self.total_epochs, c.momentum_start, c.momentum_end, 1.0)
        self._previous_anchor = None  # the last step's teacher embeddings, for the g2g_vs_previous figure

    # --- views ----------------------------------------------------------------------------------------
    def make_views(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The plans' batch of B crops -> B patch-sized views: G = ceil(B / 2) global views (crops 0..G-1 resized
        to the patch), then L = B - G local views (random patch-sized boxes of crops 0..L-1, at the plans' spacing);
        returns the views and the boxes' starts ``[L, ndim]`` in crop voxels."""
        batch, patch = crops.shape[0], self.grid.patch_size
        if batch < self.min_batch:
            raise ValueError(f"GL-MAE needs a batch of at least {self.min_batch} crops (one global and one local "
                             f"view), got {batch}: use plans whose batch_size is >= {self.min_batch} (nnU-Net's "
                             f"planner never plans less)")
        n_global = (batch + 1) // 2
        starts = views.random_box_starts(batch - n_global, crops.shape[2:], patch, crops.device)
        local = views.cut_boxes(crops[:batch - n_global], starts, patch)
        return torch.cat([views.resize(crops[:n_global], patch), local]), starts

    # --- embeddings -----------------------------------------------------------------------------------
    def layout(self, bottleneck: torch.Tensor, cell_mask: torch.Tensor) -> torch.Tensor:
        """``[V, C * 2^ndim]``: the coarse layout of the deepest encoder features (ours; a CNN has no [CLS] token).
        Per channel, the mean over the visible positions of each half x half (x half) sub-box minus the mean over
        the whole map's visible positions; 0 for a sub-box with no visible position. After instance norm the
        whole-map mean of a channel is nearly the same for every input (docs/glmae.md), where it fires is not."""
        visible = self.grid.visible_at(self.grid_mask(cell_mask), bottleneck.shape[2:])
        features = bottleneck.float() * visible  # masked positions never count
        pool = F.adaptive_avg_pool3d if bottleneck.ndim == 5 else F.adaptive_avg_pool2d
        box_visible = pool(visible, LAYOUT_BINS)  # the fraction of each sub-box that is visible
        box_mean = pool(features, LAYOUT_BINS) / box_visible.clamp_min(1e-6)
        spatial = tuple(range(2, bottleneck.ndim))
        whole_mean = features.sum(spatial, keepdim=True) / visible.sum(spatial, keepdim=True).clamp_min(1.0)
        return torch.where(box_visible > 0, box_mean - whole_mean, 0.0).flatten(1)

    @torch.no_grad()
    def teacher_embedding(self, global_views: torch.Tensor) -> torch.Tensor:
        """``[G, D]``: the teacher's projected embedding of the un-masked global views (the paper's anchor E_c)."""
        nothing = self.nothing_masked(global_views)
        encoding = self.ema.encode(global_views, self.grid_mask(nothing))  # the encoder alone
        return self.teacher_projector(self.layout(encoding.stages[-1], nothing))

    # --- the step -------------------------------------------------------------------------------------
    def step(self, batch: dict, model: nn.Module, epoch: int) -> StepOutput:
        """One student forward over all B views (each masked), the teacher on the G un-masked global views."""
        images = batch["data"]
        all_views, starts = self.make_views(images)
        n_global = all_views.shape[0] - starts.shape[0]
        cell_mask = masking.random_mask(self.random_key(all_views), self.n_masked(epoch))
        out = model(all_views, self.grid_mask(cell_mask), features=True)
        errors = losses.per_cell_error(out.reconstruction, all_views, self.grid)  # [B, N]
        student = self.predictor(self.projector(self.layout(out.encoding.stages[-1], cell_mask)))
        anchor = self.teacher_embedding(all_views[:n_global])
        g2g, g2l = global_guided_consistency(student, anchor)
        loss = losses.masked_mean(errors, cell_mask) + self.config.lambda_g2g * g2g + self.config.lambda_g2l * g2l
        figures = {**self.mask_figures(all_views, cell_mask),
                   "rec_global": losses.masked_mean(errors[:n_global], cell_mask[:n_global]).detach(),
                   "rec_local": losses.masked_mean(errors[n_global:], cell_mask[n_global:]).detach(),
                   "g2g": g2g.detach(), "g2l": g2l.detach(),
                   "g2g_vs_previous": self.g2g_against_previous_anchor(student[:n_global], anchor)}
        return StepOutput(loss, figures, self.picture(all_views, cell_mask, out.reconstruction, starts, images))

    def g2g_against_previous_anchor(self, student_global: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """G2G of this step's masked global views against the previous step's teacher anchors, i.e. mostly other
        cases (ours, a diagnostic): g2g well below it means the student's embedding is specific to its case; g2g
        close to it means the heads only match what every case has in common."""
        previous = self._previous_anchor
        if previous is None or previous.shape != anchor.shape:
            previous = anchor  # the first step: nothing to compare with yet
        self._previous_anchor = anchor.detach()
        return consistency(student_global, previous).mean().detach()

    def picture(self, all_views, cell_mask, reconstruction, starts, crops) -> Picture:
        """The global views, their masks and reconstructions, and where each one's local view lies in it."""
        n_global = all_views.shape[0] - starts.shape[0]
        boxes = views.box_coverage(starts, self.grid.patch_size, crops.shape[2:], self.grid)  # [L, N]
        boxes = torch.cat([boxes, boxes.new_zeros(n_global - boxes.shape[0], boxes.shape[1])])
        return Picture(all_views[:n_global], cell_mask[:n_global], reconstruction[:n_global].detach(),
                       {BOX_MAP: boxes})

    def epoch_figures(self, epoch: int) -> dict[str, float]:
        return {**super().epoch_figures(epoch), **self.ema.figures(epoch)}
