"""SelfMedHPM: masked autoencoding with a loss predictor that mines hard cells (HPM, Wang et al., CVPR 2023,
Haochen-Wang409/HPM; a 3D ViT port in JiaxinZhuang/MiM). Method, defaults and what is ours: docs/selfmedhpm.md.

Per step: an EMA teacher of the student and its loss predictor runs on the un-masked patch and predicts every
cell's reconstruction loss; the student masks the alpha * n_masked predicted-hardest cells plus random others
(HPM ``generate_mask``), reconstructs (L_rec) and its own predictor learns to rank the masked cells by their
actual, detached reconstruction loss (HPM ``forward_learning_loss(relative=True)``, L_pred). L = L_rec + L_pred.
"""
import torch
import torch.nn.functional as F
from torch import nn

from nnunet_anatomask.pretraining import losses, masking, schedules
from nnunet_anatomask.pretraining.grid import MaskGrid
from nnunet_anatomask.pretraining.schemes.base import MaskingScheme, Picture, StepOutput
from nnunet_anatomask.pretraining.teacher import ema_update_, make_teacher


# --- the loss predictor (ours on CNNs: HPM's is a second ViT decoder) --------------------------------------------
class CellLossPredictor(nn.Module):
    """One predicted loss per mask cell from the decoder's features at cell resolution (ours, docs/selfmedhpm.md).

    Every decoder stage's output is average-pooled (finer stages) or repeated (coarser stages) onto the cell grid,
    the stages are concatenated per cell, and a LayerNorm + 2-layer MLP maps them to one value (HPM's predictor
    ends in LayerNorm + Linear, averaged over the patch: ``decoder_pred_losspred(...).mean(-1)``).
    """

    def __init__(self, decoder_channels: list[int], grid: MaskGrid, hidden: int = 128):
        super().__init__()
        self.cells = grid.cells_per_axis
        self.pool = F.adaptive_avg_pool3d if grid.ndim == 3 else F.adaptive_avg_pool2d
        width = sum(decoder_channels)
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def cell_features(self, decoder_features: list[torch.Tensor]) -> torch.Tensor:
        """Decoder stage outputs ``[B, C_s, *spatial_s]`` -> ``[B, N, sum C_s]``: each stage's mean over every cell
        (a stage coarser than the cells: its value repeated), cells in the grid's row-major order."""
        pooled = torch.cat([self.pool(f, self.cells) for f in decoder_features], dim=1)  # [B, sum C, *cells]
        return pooled.flatten(2).transpose(1, 2)

    def forward(self, decoder_features: list[torch.Tensor]) -> torch.Tensor:
        """Decoder stage outputs (coarse to fine) -> predicted losses ``[B, N]``."""
        return self.mlp(self.cell_features(decoder_features)).squeeze(-1)


# --- ranking over cell pairs (batched: [B, M] values, pairs within each image) -----------------------------------
def pair_signs(values: torch.Tensor) -> torch.Tensor:
    """``sign(v_j - v_i)`` for every pair of cells of every image: ``[B, M]`` -> ``[B, M, M]`` (index [b, i, j])."""
    return torch.sign(values.unsqueeze(1) - values.unsqueeze(2))


def relative_ranking_loss(predicted: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """HPM's relative loss: BCE(sigmoid(p_j - p_i), 1[l_j > l_i]) over the pairs of cells of the same image with
    l_i != l_j (ties excluded), averaged over all such pairs of the batch (HPM: ``loss.sum() / labels_valid.sum()``).

    ``predicted``, ``actual``: ``[B, M]`` over the ranked cells. With s = sign(l_j - l_i) in {-1, 1} the BCE is
    softplus(-s (p_j - p_i)), the numerically stable form of HPM's log(sigmoid(.) + 1e-6) (ours: no 1e-6).
    """
    target = pair_signs(actual.detach().float())
    logits = predicted.float().unsqueeze(1) - predicted.float().unsqueeze(2)  # p_j - p_i
    valid = target.abs()
    return (F.softplus(-target * logits) * valid).sum() / valid.sum().clamp_min(1.0)


@torch.no_grad()
def ranking_accuracy(predicted: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """Fraction of the pairs with l_i != l_j that the prediction orders correctly (a tie in p counts 1/2), pooled
    over the batch like the loss (ours)."""
    target = pair_signs(actual.float())
    valid = target.abs()
    agree = (pair_signs(predicted.float()) * target + 1.0) * 0.5
    return (agree * valid).sum() / valid.sum().clamp_min(1.0)


@torch.no_grad()
def spearman(predicted: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """Spearman's rho between ``[B, M]`` predicted and actual losses, per image, averaged over the batch:
    1 - 6 sum d^2 / (M (M^2 - 1)) on ordinal ranks (ties broken by position; float losses rarely tie)."""
    m = predicted.shape[1]
    ranks = [v.float().argsort(dim=1).argsort(dim=1).float() for v in (predicted, actual)]
    d2 = (ranks[0] - ranks[1]).square().sum(dim=1)
    return (1.0 - 6.0 * d2 / max(m * (m * m - 1), 1)).mean()


def ranked_cells(cell_mask: torch.Tensor, n_masked: int, limit: int) -> torch.Tensor:
    """Indices ``[B, M]`` of the cells whose losses are ranked: the ``n_masked`` masked cells of every row, or a
    uniformly random ``limit`` of them if there are more (ours: bounds the ``[B, M, M]`` pair tensors)."""
    priority = cell_mask.float()
    if n_masked > limit:
        priority = priority + 0.5 * torch.rand_like(priority)  # random order among the masked cells (all >= 1)
    return priority.topk(min(n_masked, limit), dim=1).indices


# --- the scheme --------------------------------------------------------------------------------------------------
class SelfMedHPMScheme(MaskingScheme):
    name = "SelfMedHPM"
    mask_ratio = 0.75  # HPM mask_ratio
    ratio_from_paper = True
    alpha_max = 0.5  # HPM generate_mask: keep_ratio = (epoch + 1) / total_epoch * 0.5
    momentum_start, momentum_end, momentum_ramp_fraction = 0.999, 0.9999, 1 / 8  # HPM: over 100 of 800 epochs
    predictor_hidden = 128  # ours
    max_ranked_cells = 2048  # ours: at most this many masked cells per image enter the pairwise loss
    # HPM ranks the cells by their raw reconstruction loss (norm_pix_loss=False in main_pretrain.py); our
    # reconstruction loss stays per-cell normalised, the ranking target is its error on intensities.
    difficulty_space = "raw"
    # HPM's optimiser (main_pretrain.py): AdamW (0.9, 0.95), wd 0.05, warm-up 40 of 800 epochs, cosine to 0;
    # an absolute lr of 1e-4 instead of 1.5e-4 * batch / 256 (~1e-6 at nnU-Net's batch 2; ours).
    base_lr = 1e-4
    min_lr = 0.0
    betas = (0.9, 0.95)
    weight_decay = 0.05
    warmup_fraction = 0.05
    decay_norms_and_biases = False  # HPM main_pretrain.py: timm's add_weight_decay exempts biases and norms

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.predictor = CellLossPredictor(self.student.decoder_channels, self.grid, self.predictor_hidden)
        self.teacher = make_teacher(self.student)
        self.teacher_predictor = make_teacher(self.predictor)
        self._teacher_forward = (self.teacher,)  # a tuple: a compiled wrapper must not join the state_dict
        self._teacher_scores = None  # per-step scratch: select_mask -> step (figures, picture)

    def alpha(self, epoch: int) -> float:
        """alpha = 0.5 * (e + 1) / E (schedules.hard_fraction_hpm)."""
        return schedules.hard_fraction_hpm(epoch, self.total_epochs, self.alpha_max)

    def momentum(self, epoch: int) -> float:
        return schedules.ema_momentum(epoch, self.total_epochs, self.momentum_start, self.momentum_end,
                                      self.momentum_ramp_fraction)

    def n_hard(self, epoch: int) -> int:
        """HPM: int(n_masked * alpha) predicted-hardest cells."""
        return int(self.n_masked(epoch) * self.alpha(epoch))

    @torch.no_grad()
    def teacher_predictions(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's predicted loss ``[B, N]`` of every cell, from the un-masked patch (HPM: ``model_ema.ema(
        samples, mask=visible_mask)`` with nothing masked)."""
        nothing_masked = torch.zeros(images.shape[0], *self.grid.cells_per_axis, dtype=torch.bool,
                                     device=images.device)
        features = self._teacher_forward[0](images, nothing_masked, features=True).decoder_features
        return self.teacher_predictor(features).float()

    def select_mask(self, images: torch.Tensor, epoch: int) -> torch.Tensor:
        """The n_hard cells the teacher predicts hardest plus random others; a random mask while n_hard = 0
        (the teacher forward is then skipped)."""
        key = self.random_key(images)  # drawn first: n_hard = 0 gives RandomMask's mask for the same seed
        n_masked, n_hard = self.n_masked(epoch), self.n_hard(epoch)
        if n_hard == 0:
            self._teacher_scores = None
            return masking.random_mask(key, n_masked)
        self._teacher_scores = self.teacher_predictions(images)
        return masking.guided_mask(self._teacher_scores, key, n_masked, n_hard)

    def step(self, images: torch.Tensor, model: nn.Module, epoch: int) -> StepOutput:
        """Teacher ranks -> student mask -> masked forward with features -> L_rec + L_pred (HPM engine_pretrain)."""
        cell_mask = self.select_mask(images, epoch)
        out = model(images, self.grid_mask(cell_mask), features=True)
        reconstruction_loss, _ = losses.reconstruction_loss(out.reconstruction, images, cell_mask, self.grid)
        errors = self.cell_difficulty(out.reconstruction.detach(), images)  # the ranking target (raw, as HPM)
        predicted = self.predictor(out.decoder_features)
        ranked = ranked_cells(cell_mask, self.n_masked(epoch), self.max_ranked_cells)
        ranked_predicted, ranked_errors = predicted.gather(1, ranked), errors.gather(1, ranked)
        prediction_loss = relative_ranking_loss(ranked_predicted, ranked_errors)
        figures = {**self.mask_figures(images, cell_mask), "reconstruction_loss": reconstruction_loss.detach(),
                   "ranking_loss": prediction_loss.detach(),
                   "rank_accuracy": ranking_accuracy(ranked_predicted, ranked_errors),
                   "spearman": spearman(ranked_predicted, ranked_errors)}
        maps = {"predicted loss (student)": predicted.detach().float(),
                f"actual loss ({self.difficulty_space}, masked cells)": torch.where(cell_mask, errors, 0.0)}
        if self._teacher_scores is not None:
            figures.update(self.teacher_figures(ranked, ranked_errors))
            maps["predicted loss (teacher, un-masked)"] = self._teacher_scores
        picture = Picture(images, cell_mask, out.reconstruction.detach(), maps)
        return StepOutput(reconstruction_loss + prediction_loss, figures, picture)

    def teacher_figures(self, ranked: torch.Tensor, ranked_errors: torch.Tensor) -> dict[str, torch.Tensor]:
        """How well the teacher's ranking (the one that chose the hard cells) orders the student's actual losses."""
        teacher_ranked = self._teacher_scores.gather(1, ranked)
        return {"teacher_rank_accuracy": ranking_accuracy(teacher_ranked, ranked_errors),
                "teacher_spearman": spearman(teacher_ranked, ranked_errors)}

    def compile_(self) -> None:
        """Compile the teacher's forward too (the runner compiles the student where nnU-Net compiles)."""
        self._teacher_forward = (torch.compile(self.teacher),)

    def on_step_end(self, epoch: int) -> None:
        """HPM: the EMA covers the whole model, reconstruction and loss-predictor branches alike."""
        momentum = self.momentum(epoch)
        ema_update_(self.teacher, self.student, momentum)
        ema_update_(self.teacher_predictor, self.predictor, momentum)

    def epoch_figures(self, epoch: int) -> dict[str, float]:
        return {**super().epoch_figures(epoch), "alpha": self.alpha(epoch), "teacher_momentum": self.momentum(epoch)}
