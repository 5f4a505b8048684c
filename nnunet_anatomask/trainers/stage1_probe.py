"""The linear probe of stage 1 (opt-in, ``nnUNet_anatomask_probe_every=N``; docs/watching.md).

Every N epochs (and after the last one), when the dataset has labels, a linear head on the frozen encoder's skip
features is fitted to the labelled training cases of the fold and scored by Dice on its validation cases: an
early answer to "has pretraining helped yet?", long before stage 2. The same probe on the initial (random)
weights, run once at the start, and the Dice of labelling every voxel foreground (chance) are logged beside it.

All ours (linear probing is the standard read-out of self-supervised features; these settings are not a paper's):
* head: a 1x1 convolution per encoder skip, its class logits upsampled (bi/trilinear) to the patch and summed: one
  1x1 convolution on the concatenation of every skip upsampled to the patch, without making that concatenation
  (upsampling is linear and acts on each channel alone); zero-initialised, so it draws nothing from any RNG;
* data: PROBE_CROPS fixed crops (fewer in runs so short that nnU-Net's validation would forward fewer) of the
  training cases (half centred on labelled voxels, as nnU-Net oversamples
  foreground) and of the validation cases; one forward per crop per probe; the head is fitted on the features of
  PROBE_VOXELS random voxels of each training crop (the skips upsampled at those voxels only, so nothing of
  the patch's size is kept), and scored on the whole validation crops. Crops, voxels and batches are drawn by
  generators of their own (fixed_crops.py), never the global streams training draws from;
* fit: nnU-Net's own Dice + cross-entropy loss, Adam (lr PROBE_LR), PROBE_ITERATIONS steps of PROBE_BATCH voxels
  (consecutive slices of the training voxels, shuffled once);
* score: nnU-Net's pseudo-Dice (true/false positives and negatives summed over every validation crop, one Dice
  per foreground class, the mean over the classes that occur).
Region-based datasets (nnU-Net's ``regions_class_order``) are not probed; fold ``all`` has no validation cases.
"""
from time import time
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.utilities.helpers import dummy_context
from torch import nn

from nnunet_anatomask.trainers.fixed_crops import fixed_crops, validation_forwards
from nnunet_anatomask.trainers.stage1_callbacks import Stage1Callback

PROBE_ITERATIONS = 200  # "a few hundred" head steps
PROBE_CROPS = 16  # fixed crops per split
PROBE_VOXELS = 4096  # voxels per training crop whose features the head is fitted on
PROBE_BATCH = 8192  # voxels per head step
PROBE_LR = 1e-2  # Adam, on a zero-initialised linear head
PROBE_SEED = 2025  # the crops', voxels' and batches' own generators
FOREGROUND_SHARE = 0.5  # training crops centred on a labelled voxel


class LinearHead(nn.Module):
    """``logits = bias + sum_s upsample(W_s skip_s)``: a 1x1 convolution on every encoder skip, equal to one 1x1
    convolution on all skips upsampled to the patch and concatenated."""

    def __init__(self, channels: list[int], classes: int, patch_size: tuple[int, ...]):
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(torch.zeros(classes, c)) for c in channels)
        self.bias = nn.Parameter(torch.zeros(classes))
        self.patch_size = tuple(patch_size)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        """Logits ``[B, classes, *patch]`` from the skips (fine to coarse)."""
        out = self.bias.view(1, -1, *[1] * len(self.patch_size))
        for weight, skip in zip(self.weights, skips):
            logits = torch.einsum("bc...,kc->bk...", skip.float(), weight)
            if tuple(logits.shape[2:]) != self.patch_size:
                mode = "trilinear" if len(self.patch_size) == 3 else "bilinear"
                logits = F.interpolate(logits, size=self.patch_size, mode=mode, align_corners=False)
            out = out + logits
        return out

    def voxel_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``[M, classes]`` of voxels whose upsampled, concatenated skip features are ``[M, sum C]``."""
        return features @ torch.cat(list(self.weights), dim=1).T + self.bias


def voxel_features(skips: list[torch.Tensor], voxels: torch.Tensor, patch_size: tuple[int, ...]) -> torch.Tensor:
    """``[B, M, sum C]``: every skip upsampled as ``F.interpolate(..., align_corners=False)`` upsamples it to the
    patch, read at the voxels ``[B, M, ndim]`` only (``grid_sample`` at the same coordinates), concatenated."""
    size = torch.tensor(patch_size, device=voxels.device, dtype=torch.float32)
    grid = ((2 * voxels.float() + 1) / size - 1).flip(-1)  # normalised, x (last axis) first
    grid = grid.view(grid.shape[0], *[1] * (len(patch_size) - 1), grid.shape[1], len(patch_size))
    read = [F.grid_sample(s.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
            for s in skips]  # [B, C, 1, ..., M]
    return torch.cat([r.flatten(2) for r in read], dim=1).transpose(1, 2)


def dice_counts(logits: torch.Tensor, labels: torch.Tensor, classes: int, ignore_label: Optional[int]) -> torch.Tensor:
    """``[classes - 1, 3]``: true positives, false positives, false negatives of every foreground class."""
    prediction, labels = logits.argmax(1), labels[:, 0].long()
    valid = labels != ignore_label if ignore_label is not None else torch.ones_like(labels, dtype=torch.bool)
    counts = []
    for c in range(1, classes):
        predicted, actual = (prediction == c) & valid, (labels == c) & valid
        counts.append(torch.stack([(predicted & actual).sum(), (predicted & ~actual).sum(),
                                   (~predicted & actual).sum()]))
    return torch.stack(counts).double()


def mean_dice(counts: torch.Tensor) -> float:
    """nnU-Net's pseudo-Dice from summed counts: 2 TP / (2 TP + FP + FN) per class, mean over the classes that occur
    (NaN when none does)."""
    tp, fp, fn = counts.unbind(1)
    present = (tp + fn) > 0
    if not present.any():
        return float("nan")
    return float((2 * tp / (2 * tp + fp + fn).clamp_min(1))[present].mean())


def chance_dice(labels: torch.Tensor, classes: int, ignore_label: Optional[int]) -> float:
    """Dice of labelling every voxel with the class: 2p / (1 + p) for a class covering a share p of the voxels, mean
    over the foreground classes that occur (the best constant prediction)."""
    valid = labels != ignore_label if ignore_label is not None else torch.ones_like(labels, dtype=torch.bool)
    shares = [float(((labels == c) & valid).sum()) / max(float(valid.sum()), 1.0) for c in range(1, classes)]
    return float(np.mean([2 * p / (1 + p) for p in shares if p > 0])) if any(p > 0 for p in shares) else float("nan")


def no_probe(trainer) -> str:
    """Why this run cannot be probed, or ''."""
    lm = trainer.label_manager
    if trainer.fold == "all":
        return "fold 'all' has no validation cases to score it on; probe fold 0-4"
    if lm.has_regions:
        return "region-based labels (regions_class_order) are not probed"
    if not lm.foreground_labels:
        return "the dataset declares no foreground label"
    return ""


class LinearProbe(Stage1Callback):
    """Adds ``probe_dice``, ``probe_dice_at_init``, ``probe_chance`` and ``probe_time`` (seconds) to the figures of
    every N-th epoch and of the last one."""

    def __init__(self, every: int, iterations: int = PROBE_ITERATIONS, crops: int = PROBE_CROPS):
        self.every, self.iterations, self.crops = every, iterations, crops
        self.train = self.validation = None
        self.at_init = self.chance = float("nan")

    def on_run_start(self, runner) -> None:
        tr = runner.trainer
        why = no_probe(tr)
        if not why:
            patch, n = tr.configuration_manager.patch_size, min(self.crops, validation_forwards(runner.iterations,
                                                                                                  tr.batch_size))
            train_set, validation_set = tr.get_tr_and_val_datasets()
            self.train = fixed_crops(train_set, n, patch, PROBE_SEED, FOREGROUND_SHARE)
            self.validation = fixed_crops(validation_set, n, patch, PROBE_SEED + 1, FOREGROUND_SHARE)
            if not (self.train.labels > 0).any():
                why, self.train = "the training crops hold no labelled voxel", None
        if why:
            runner.log.print(f"Linear probe: off: {why}")
            return
        lm = tr.label_manager
        self.classes, self.ignore_label = lm.num_segmentation_heads, lm.ignore_label
        self.device, self.batch_size, self.grid = runner.device, tr.batch_size, runner.grid
        self.channels = list(runner.model.encoder_channels)
        self.chance = chance_dice(self.validation.labels, self.classes, self.ignore_label)
        runner.log.print(f"Linear probe: every {self.every} epochs, a linear head on the frozen encoder's skips, "
                         f"{self.iterations} steps on {len(self.train.cases)} crops of "
                         f"{len(set(self.train.cases))} training cases, Dice on {len(self.validation.cases)} crops of "
                         f"{len(set(self.validation.cases))} validation cases (chance {self.chance:.4f})")
        history = [v for v in runner.log.values.get("probe_dice_at_init", []) if v == v]
        if runner.current_epoch == 0:
            start = time()
            self.at_init = self.score(runner.model)
            runner.log.print(f"Linear probe at initialisation (random weights): Dice {self.at_init:.4f} "
                             f"({time() - start:.1f} s)")
        elif history:
            self.at_init = history[-1]

    # --- features, fit, score -----------------------------------------------------------------------------
    def features(self, model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's stages of un-masked images (the masked-model contract's encode, no decoder), without
        gradients (mixed precision on CUDA, as training)."""
        with torch.no_grad(), torch.autocast("cuda", enabled=True) if self.device.type == "cuda" else dummy_context():
            return list(model.encode(images.to(self.device), None).stages)

    def training_voxels(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """PROBE_VOXELS voxels of every training crop, drawn by the probe's own generator: their upsampled skip
        features ``[V, sum C]`` and labels ``[V]``."""
        generator = torch.Generator().manual_seed(PROBE_SEED)
        patch, features, labels = tuple(self.train.images.shape[2:]), [], []
        for first in range(0, len(self.train.images), self.batch_size):
            images = self.train.images[first:first + self.batch_size]
            voxels = torch.stack([torch.randint(n, (images.shape[0], PROBE_VOXELS), generator=generator)
                                  for n in patch], dim=-1)  # [B, M, ndim]
            with torch.no_grad():
                read = voxel_features(self.features(model, images), voxels.to(self.device), patch)
            features.append(read.flatten(0, 1))
            crop_labels = self.train.labels[first:first + self.batch_size, 0]
            labels.append(crop_labels[(torch.arange(len(images))[:, None], *voxels.unbind(-1))].flatten())
        return torch.cat(features), torch.cat(labels).to(self.device)

    def fit(self, model: nn.Module) -> LinearHead:
        """The head fitted on the training voxels: nnU-Net's Dice + CE loss, Adam, PROBE_ITERATIONS steps through
        consecutive slices of PROBE_BATCH voxels of the training voxels shuffled once by the probe's generator."""
        features, labels = self.training_voxels(model)
        head = LinearHead(self.channels, self.classes, tuple(self.train.images.shape[2:])).to(self.device)
        loss_fn = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                                 weight_ce=1, weight_dice=1, ignore_label=self.ignore_label,
                                 dice_class=MemoryEfficientSoftDiceLoss)
        optimizer = torch.optim.Adam(head.parameters(), lr=PROBE_LR)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(PROBE_SEED)).to(self.device)
        features, labels = features[order], labels[order]  # shuffled once: batches are slices, not copies
        size = min(PROBE_BATCH, len(labels))
        for step in range(self.iterations):
            first = step * size % (len(labels) - size + 1)
            logits = head.voxel_logits(features[first:first + size]).T[None]  # [1, classes, M]: voxels as an image
            optimizer.zero_grad(set_to_none=True)
            loss_fn(logits, labels[first:first + size][None, None]).backward()
            optimizer.step()
        return head

    def score(self, model: nn.Module) -> float:
        """Fit a head on the current weights; its mean foreground Dice on the validation crops."""
        was_training = model.training
        model.eval()
        head = self.fit(model)
        counts = 0
        with torch.no_grad():
            for first in range(0, len(self.validation.images), self.batch_size):
                logits = head(self.features(model, self.validation.images[first:first + self.batch_size]))
                labels = self.validation.labels[first:first + self.batch_size].to(self.device)
                counts = counts + dice_counts(logits, labels, self.classes, self.ignore_label)
        model.train(was_training)
        return mean_dice(counts)

    # --- the loop -----------------------------------------------------------------------------------------
    def due(self, runner, epoch: int) -> bool:
        return self.train is not None and ((epoch + 1) % self.every == 0 or epoch == runner.num_epochs - 1)

    def on_epoch_end(self, runner, epoch: int, figures: dict) -> None:
        if not self.due(runner, epoch):
            return
        start = time()
        figures.update(probe_dice=self.score(runner.model), probe_dice_at_init=self.at_init,
                       probe_chance=self.chance, probe_time=time() - start)

    def on_epoch_logged(self, runner, epoch: int, figures: dict) -> None:
        if "probe_dice" in figures:
            runner.log.print(f"Linear probe: validation Dice {figures['probe_dice']:.4f} (at initialisation "
                             f"{self.at_init:.4f}, chance {self.chance:.4f}), {figures['probe_time']:.1f} s")

    def on_run_end(self, runner, summary: dict) -> None:
        dice = [v for v in runner.log.values.get("probe_dice", []) if v == v]
        if dice:
            summary.update(final_probe_dice=dice[-1], probe_dice_at_init=self.at_init, probe_chance=self.chance)
