"""The one interface every masking scheme implements (docs/architecture.md), and what they share.

A scheme owns what is particular to a paper: how the mask is chosen, what the loss is, any extra state
(teacher, heads, centroids), its optimiser defaults and, where the paper needs it, its whole step. The stage-1
runner (trainers/stage1.py) owns the rest: mixed precision, the grad scaler, clipping, the optimiser step, logs,
pictures and checkpoints. A scheme file registers itself by subclassing with a ``name``: its trainer, benchmark
row and evaluation row follow from ``SCHEMES``.
"""
from typing import ClassVar, NamedTuple, Optional

import torch
from torch import nn

from nnunet_anatomask.pretraining import distributed, losses, masking
from nnunet_anatomask.pretraining.grid import MaskGrid
from nnunet_anatomask.pretraining.recipes import Stage1Recipe

SCHEMES: dict[str, type["MaskingScheme"]] = {}  # name -> scheme class, in registration order


class Picture(NamedTuple):
    """What the stage-1 picture shows of a step: images and prediction ``[B, C, *patch]`` (prediction in the
    per-cell normalised space, detached), the cell mask ``[B, N]`` and per-cell maps ``{title: [B, N]}``."""

    images: torch.Tensor
    cell_mask: torch.Tensor
    prediction: torch.Tensor
    maps: dict[str, torch.Tensor]


class StepOutput(NamedTuple):
    """A scheme's step: the scalar loss to minimise, detached 0-d figures to log, and the picture."""

    loss: torch.Tensor
    figures: dict[str, torch.Tensor]
    picture: Picture


class MaskingScheme(nn.Module):
    """Base class: subclasses set `name` and the defaults below, and override select_mask (and loss, or step).

    Submodules and buffers of a scheme (teacher, heads) form its `state_dict`, saved as `scheme_state`;
    the student model is held by reference only, its weights are the checkpoint's `network_weights`.
    """

    name: ClassVar[str] = "base"
    mask_ratio: ClassVar[float] = 0.6
    # True where the paper fixes the ratio; otherwise a backbone recipe's ratio replaces mask_ratio (Primus: 0.75).
    ratio_from_paper: ClassVar[bool] = False
    min_batch: ClassVar[int] = 1  # crops a step needs per process (GL-MAE: a global and a local view)
    crop_scale: ClassVar[float] = 1.0  # the loader's crops are the plans' patch x crop_scale (GL-MAE: 5/3)
    # Where the scheme scores how hard a cell is (losses.cell_difficulty): "normalized" (the loss's own space) or
    # "raw" (intensity missed). Used only by schemes that rank or weight cells by difficulty; each sets its own.
    difficulty_space: ClassVar[str] = "normalized"
    # Optimiser (AdamW) and schedule defaults on nnU-Net's CNNs, every length a fraction of the run (``recipe``).
    base_lr: ClassVar[float] = 1e-4
    min_lr: ClassVar[float] = 1e-6
    betas: ClassVar[tuple[float, float]] = (0.9, 0.999)
    weight_decay: ClassVar[float] = 1e-5
    warmup_fraction: ClassVar[float] = 0.02
    grad_clip: ClassVar[float] = 12.0
    decay_norms_and_biases: ClassVar[bool] = True  # False: no weight decay on parameters of <= 1 dimension

    def __init_subclass__(cls, **kwargs) -> None:
        """Register every subclass that names itself (a new scheme is one file, registered once)."""
        super().__init_subclass__(**kwargs)
        if cls.difficulty_space not in losses.DIFFICULTY_SPACES:
            raise ValueError(f"{cls.__module__}.{cls.__qualname__}.difficulty_space must be one of "
                             f"{losses.DIFFICULTY_SPACES}, got {cls.difficulty_space!r}")
        if "name" in cls.__dict__:
            registered = SCHEMES.get(cls.name)
            if registered is not None and (registered.__module__, registered.__qualname__) != \
                    (cls.__module__, cls.__qualname__):
                raise ValueError(f"scheme name {cls.name!r} of {cls.__module__}.{cls.__qualname__} is taken by "
                                 f"{registered.__module__}.{registered.__qualname__}: give the scheme another name")
            SCHEMES[cls.name] = cls

    @classmethod
    def recipe(cls) -> Stage1Recipe:
        """The scheme's own optimiser recipe (the CNN backbone's; Primus uses nnssl's, recipes.NNSSL_EVA_MAE)."""
        return Stage1Recipe(source=f"{cls.name}'s defaults", lr=cls.base_lr, min_lr=cls.min_lr, betas=cls.betas,
                            weight_decay=cls.weight_decay, warmup_fraction=cls.warmup_fraction,
                            grad_clip=cls.grad_clip, decay_norms_and_biases=cls.decay_norms_and_biases)

    def __init__(self, model: nn.Module, grid: MaskGrid, total_epochs: int, foreground_threshold: float = 1.0,
                 recipe_ratio: Optional[float] = None):
        """``recipe_ratio``: the backbone recipe's mask ratio, used unless the paper fixes the ratio."""
        super().__init__()
        if recipe_ratio is not None and not self.ratio_from_paper:
            self.mask_ratio = recipe_ratio
        self._student = (model,)  # a tuple keeps it out of this module's parameters and state_dict
        self.grid = grid
        self.total_epochs = total_epochs
        self.foreground_threshold = foreground_threshold
        self.picture_maps: dict[str, torch.Tensor] = {}  # per-cell maps [B, N] for the stage-1 picture

    @property
    def student(self) -> nn.Module:
        return self._student[0]

    # --- the interface -------------------------------------------------------------------------------
    def step(self, images: torch.Tensor, model: nn.Module, epoch: int) -> StepOutput:
        """One stage-1 forward (MAE: random_masking -> forward_encoder/decoder -> forward_loss); the runner does
        backward and the optimiser step. ``model`` may be the compiled student. Override for several masked
        forwards per step or for features (``model(images, mask, features=True)``)."""
        cell_mask = self.select_mask(images, epoch)
        prediction = model(images, self.grid_mask(cell_mask))
        loss, figures = self.loss(images, prediction, cell_mask, epoch)
        return StepOutput(loss, figures, Picture(images, cell_mask, prediction.detach(), dict(self.picture_maps)))

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

    def sync_state_(self) -> None:
        """Under DDP, after on_step_end: make this scheme's state identical on every rank (no-op in one process).

        Default: floating buffers (running statistics, centroids updated from each rank's batch) averaged over the
        ranks, other buffers set to rank 0's. Parameters need nothing: trained heads get averaged gradients, and an
        EMA teacher updates from the synchronised student. Override where an average is not the right merge (e.g.
        all-reduce sums and counts, then divide). docs/pools_and_ddp.md.
        """
        distributed.sync_buffers_(self)

    def compile_(self) -> None:
        """torch.compile the scheme's own forward passes (teacher, heads); called where the student is compiled."""

    def epoch_figures(self, epoch: int) -> dict[str, float]:
        """Schedule values to log once per epoch."""
        return {"mask_ratio": self.ratio(epoch)}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters of the scheme's own heads that the stage-1 optimiser trains (none by default)."""
        return [p for p in self.parameters() if p.requires_grad]

    # --- shared helpers ------------------------------------------------------------------------------
    def grid_mask(self, cell_mask: torch.Tensor) -> torch.Tensor:
        """[B, N] -> [B, *cells_per_axis], the shape the masked model takes."""
        return cell_mask.view(cell_mask.shape[0], *self.grid.cells_per_axis)

    def cell_difficulty(self, prediction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """How hard each cell was to reconstruct, [B, N], in this scheme's ``difficulty_space``."""
        return losses.cell_difficulty(prediction, images, self.grid, self.difficulty_space)

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
