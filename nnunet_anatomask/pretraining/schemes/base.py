"""The one interface every pretraining scheme implements (docs/architecture.md), and what every scheme has.

A scheme owns what is particular to a paper: its settings (one dataclass), its step (masks, forwards, loss), any
extra state (teacher, heads, centroids). The stage-1 runner (trainers/stage1.py) owns the rest: mixed precision,
the grad scaler, clipping, the optimiser step, logs, pictures and checkpoints. A scheme file registers itself by
subclassing with a ``name``: its trainers, benchmark row and evaluation row follow from ``SCHEMES``. Masking
schemes get their shared pieces from ``masked_modelling.MaskingScheme``; a scheme that masks nothing (a
contrastive one) subclasses ``Scheme`` directly.
"""
from dataclasses import dataclass, fields
from typing import Annotated, ClassVar, Literal, NamedTuple, Optional, get_type_hints

import torch
from torch import nn

from nnunet_anatomask.errors import PluginError
from nnunet_anatomask.pretraining import distributed, losses
from nnunet_anatomask.pretraining.grid import MaskGrid
from nnunet_anatomask.pretraining.recipes import Stage1Recipe
from nnunet_anatomask.pretraining.teacher import EMATeacher

SCHEMES: dict[str, type["Scheme"]] = {}  # name -> scheme class, in registration order


class SchemeConfigError(PluginError, ValueError):
    """A scheme setting that cannot be used; the message names the setting and the fix."""


FIX = "Fix: correct it in nnUNet_anatomask_scheme_config (docs/usage.md), or leave it out for the default"


class Rule(NamedTuple):
    """A range a setting must lie in, attached to its type with ``Annotated`` (checked in ``SchemeConfig``)."""

    low: float
    high: float = float("inf")
    low_inclusive: bool = True
    high_inclusive: bool = True

    def allows(self, value: float) -> bool:
        above = value >= self.low if self.low_inclusive else value > self.low
        below = value <= self.high if self.high_inclusive else value < self.high
        return above and below

    def __str__(self) -> str:
        if self.high == float("inf"):
            return f"{'>=' if self.low_inclusive else '>'} {self.low:g}"
        low, high = "[" if self.low_inclusive else "(", "]" if self.high_inclusive else ")"
        return f"in {low}{self.low:g}, {self.high:g}{high}"


Ratio = Annotated[float, Rule(0, 1, False, False)]  # a share of the cells, strictly between 0 and 1
Share = Annotated[float, Rule(0, 1)]  # a fraction in [0, 1]
Positive = Annotated[float, Rule(0, low_inclusive=False)]
NonNegative = Annotated[float, Rule(0)]
CropScale = Annotated[float, Rule(1)]  # the loader's crops are the plans' patch x crop_scale
DifficultySpace = Literal[losses.DIFFICULTY_SPACES]  # where a scheme scores how hard a cell is (cell_difficulty)


def at_least(n: int):
    """An int setting with a minimum (``clusters: at_least(2) = 2``)."""
    return Annotated[int, Rule(n)]


@dataclass(frozen=True)
class SchemeConfig:
    """Settings every scheme has: AdamW and its schedule (every length a fraction of the run), the loader's crop,
    and whether Primus trainers pretrain with nnssl's recipe or with these (docs/backbones.md).

    A scheme's own settings subclass this, one field per setting, with a ``Rule`` in the type where a value can be
    out of range; a user overrides any of them without code (knobs.SCHEME_CONFIG, docs/usage.md).
    """

    base_lr: Positive = 1e-4
    min_lr: NonNegative = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: NonNegative = 1e-5
    warmup_fraction: Share = 0.02
    grad_clip: Positive = 12.0
    decay_norms_and_biases: bool = True  # False: no weight decay on parameters of <= 1 dimension (HPM)
    crop_scale: CropScale = 1.0  # GL-MAE: 5/3
    primus_recipe: Literal["nnssl", "scheme"] = "nnssl"  # Primus trainers: nnssl's recipe, or the settings above

    def __post_init__(self) -> None:
        """Refuse, by name, a value outside its ``Rule``."""
        hints = get_type_hints(type(self), include_extras=True)
        for f in fields(self):
            for rule in getattr(hints[f.name], "__metadata__", ()):
                value = getattr(self, f.name)
                if isinstance(rule, Rule) and not rule.allows(value):
                    raise SchemeConfigError(f"the {type(self).__name__} setting {f.name!r} = {value!r} is not "
                                            f"allowed: it must be {rule}. {FIX}")

    def recipe(self, scheme_name: str) -> Stage1Recipe:
        """These optimiser settings as a recipe: the one stage 1 uses on nnU-Net's CNNs (a backbone may have its
        own: ``Backbone.recipe``; Primus uses nnssl's unless ``primus_recipe`` is "scheme")."""
        return Stage1Recipe(source=f"{scheme_name}'s settings", lr=self.base_lr, min_lr=self.min_lr,
                            betas=self.betas, weight_decay=self.weight_decay, warmup_fraction=self.warmup_fraction,
                            grad_clip=self.grad_clip, decay_norms_and_biases=self.decay_norms_and_biases)


class Picture(NamedTuple):
    """What the stage-1 picture shows of a step: images ``[B, C, *patch]``, the cell mask ``[B, N]`` and the
    prediction ``[B, C, *patch]`` (per-cell normalised space, detached) where the scheme has them (else None),
    and per-cell maps ``{title: [B, N]}``."""

    images: torch.Tensor
    cell_mask: Optional[torch.Tensor]
    prediction: Optional[torch.Tensor]
    maps: dict[str, torch.Tensor]


class StepOutput(NamedTuple):
    """A scheme's step: the scalar loss to minimise, detached 0-d figures to log, and the picture."""

    loss: torch.Tensor
    figures: dict[str, torch.Tensor]
    picture: Picture


class Scheme(nn.Module):
    """Base class: subclasses set ``name`` and ``config_class`` and implement ``step``.

    Submodules and buffers of a scheme (teacher, heads) form its ``state_dict``, saved as ``scheme_state``; the
    student model is held by reference only, its weights are the checkpoint's ``network_weights``.
    """

    name: ClassVar[str] = "base"
    config_class: ClassVar[type[SchemeConfig]] = SchemeConfig
    min_batch: ClassVar[int] = 1  # crops a step needs per process (GL-MAE: a global and a local view)

    def __init_subclass__(cls, **kwargs) -> None:
        """Register every subclass that names itself (a new scheme is one file, registered once)."""
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            registered = SCHEMES.get(cls.name)
            if registered is not None and (registered.__module__, registered.__qualname__) != \
                    (cls.__module__, cls.__qualname__):
                raise ValueError(f"scheme name {cls.name!r} of {cls.__module__}.{cls.__qualname__} is taken by "
                                 f"{registered.__module__}.{registered.__qualname__}: give the scheme another name")
            SCHEMES[cls.name] = cls

    def __init__(self, model: nn.Module, grid: MaskGrid, total_epochs: int, foreground_threshold: float = 1.0,
                 config: Optional[SchemeConfig] = None):
        super().__init__()
        self.config = self.config_class() if config is None else config
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got "
                            f"{type(self.config).__name__}")
        self._student = (model,)  # a tuple keeps it out of this module's parameters and state_dict
        self.grid = grid
        self.total_epochs = total_epochs
        self.foreground_threshold = foreground_threshold

    @property
    def student(self) -> nn.Module:
        return self._student[0]

    # --- the interface -------------------------------------------------------------------------------
    def step(self, batch: dict, model: nn.Module, epoch: int) -> StepOutput:
        """One stage-1 forward on the loader's batch (``batch["data"]``: images ``[B, C, *crop]`` on the device;
        no labels); the runner does backward and the optimiser step. ``model`` may be the compiled student."""
        raise NotImplementedError

    def on_step_end(self, epoch: int) -> None:
        """Called after every optimiser step: every EMA teacher the scheme holds moves towards its student (extend
        for other state, e.g. running statistics)."""
        for teacher in self.ema_teachers():
            teacher.update_(epoch)

    def sync_state_(self) -> None:
        """Under DDP, after on_step_end: make this scheme's state identical on every rank (no-op in one process).

        Default: floating buffers (running statistics, centroids updated from each rank's batch) averaged over the
        ranks, other buffers set to rank 0's. Parameters need nothing: trained heads get averaged gradients, and an
        EMA teacher updates from the synchronised student. Override where an average is not the right merge (e.g.
        all-reduce sums and counts, then divide). docs/pools_and_ddp.md.
        """
        distributed.sync_buffers_(self)

    def compile_(self) -> None:
        """torch.compile the scheme's own forward passes (its EMA teachers'; extend for heads); called where the
        runner compiles the student."""
        for teacher in self.ema_teachers():
            teacher.compile_()

    def ema_teachers(self) -> list[EMATeacher]:
        """The EMA teachers this scheme holds as attributes (teacher.EMATeacher)."""
        return [value for value in vars(self).values() if isinstance(value, EMATeacher)]

    def epoch_figures(self, epoch: int) -> dict[str, float]:
        """Schedule values to log once per epoch."""
        return {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters of the scheme's own heads that the stage-1 optimiser trains (none by default)."""
        return [p for p in self.parameters() if p.requires_grad]
