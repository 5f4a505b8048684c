"""Stage-1 optimiser recipes: AdamW's settings, the learning-rate schedule, gradient clipping, which parameters are
exempt from weight decay, stochastic depth and the default mask ratio, as one object (docs/backbones.md).

Which recipe a run uses depends on the backbone: on nnU-Net's CNNs each scheme's own (its paper's, written as
settings of the scheme, ``SchemeConfig.recipe``); on Primus nnssl's EvaMAE recipe for every scheme
(``NNSSL_EVA_MAE``), as nnssl pretrains Primus. The backbone supplies it (``Backbone.recipe``) and the runner reads
it (trainers/stage1.py); nothing else holds optimiser settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import torch

from nnunet_anatomask.pretraining import schedules

SCHEDULES = ("cosine", "poly")


@dataclass(frozen=True)
class Stage1Recipe:
    """Stage 1's optimiser (AdamW) and schedule; every length a fraction of the run (docs/usage.md)."""

    source: str                       # where the numbers come from, for the log
    lr: float
    min_lr: float
    betas: tuple[float, float]
    weight_decay: float
    warmup_fraction: float
    schedule: str = "cosine"          # "cosine" to min_lr (SparK, MAE, HPM) or "poly" (nnssl: (1 - t)^0.9)
    grad_clip: float = 12.0
    decay_norms_and_biases: bool = True   # False: parameters of <= 1 dimension get no weight decay (timm, HPM)
    drop_path_rate: float = 0.0       # stochastic depth of the encoder and light decoder (Primus only)
    mask_ratio: Optional[float] = None    # the ratio of schemes whose paper fixes none (None: the scheme's own)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"recipe {self.source!r}: schedule must be one of {SCHEDULES}, got {self.schedule!r}")

    def describe(self, first_ratio: Optional[float], last_ratio: Optional[float]) -> str:
        """The log line of the recipe and the scheme's mask ratio (first and last epoch's, if scheduled; none for a
        scheme that masks nothing)."""
        decay = "" if self.decay_norms_and_biases else " (none on biases and norms)"
        depth = f", stochastic depth {self.drop_path_rate:g}" if self.drop_path_rate else ""
        ratio = "" if first_ratio is None else f"; mask ratio {first_ratio:g}" + (
            "" if last_ratio == first_ratio else f" -> {last_ratio:g}")
        return (f"Optimiser ({self.source}): AdamW lr {self.lr:g}, betas {tuple(self.betas)}, weight decay "
                f"{self.weight_decay:g}{decay}, warm-up {self.warmup_fraction:.0%} of the epochs then "
                f"{self.schedule}, gradient clip {self.grad_clip:g}{depth}{ratio}")

    def lr_at(self, epoch: int, total_epochs: int) -> float:
        """The epoch's learning rate: linear warm-up over ``warmup_fraction`` of the epochs, then cosine to
        min_lr (schedules.warmup_cosine_lr) or poly (schedules.warmup_poly_lr, min_lr unused)."""
        if self.schedule == "poly":
            return schedules.warmup_poly_lr(epoch, total_epochs, self.lr, self.warmup_fraction)
        return schedules.warmup_cosine_lr(epoch, total_epochs, self.lr, self.min_lr, self.warmup_fraction)

    def param_groups(self, parameters: Iterable[torch.nn.Parameter]) -> list[dict]:
        """AdamW's parameter groups: one with ``weight_decay``; without ``decay_norms_and_biases`` a second, first,
        of every parameter of <= 1 dimension (biases, norm weights, mask tokens) with none (timm's
        param_groups_weight_decay, as HPM's main_pretrain.py uses it)."""
        parameters = list(parameters)
        if self.decay_norms_and_biases:
            return [{"params": parameters, "weight_decay": self.weight_decay}]
        exempt = [p for p in parameters if p.ndim <= 1]
        decayed = [p for p in parameters if p.ndim > 1]
        return [group for group in ({"params": exempt, "weight_decay": 0.0},
                                    {"params": decayed, "weight_decay": self.weight_decay}) if group["params"]]

    def optimizer(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.AdamW:
        """AdamW over ``parameters`` (the runner sets every group's learning rate at the start of each epoch)."""
        return torch.optim.AdamW(self.param_groups(parameters), lr=self.lr, betas=self.betas,
                                 weight_decay=self.weight_decay)


# nnssl's recipe for pretraining Primus (MIC-DKFZ/nnssl, BaseEvaMAETrainer: AdamW lr 3e-4, weight decay 5e-2,
# betas (0.9, 0.98), every parameter decayed, clip 1, linear warm-up over 50 of 1000 epochs then poly, drop-path 0.2;
# BaseMAETrainer: mask_percentage 0.75).
NNSSL_EVA_MAE = Stage1Recipe(source="nnssl BaseEvaMAETrainer", lr=3e-4, min_lr=0.0, betas=(0.9, 0.98),
                             weight_decay=5e-2, warmup_fraction=0.05, schedule="poly", grad_clip=1.0,
                             decay_norms_and_biases=True, drop_path_rate=0.2, mask_ratio=0.75)
