"""One stage-1 optimiser step around a masked model and a scheme (docs/architecture.md): the part of the runner that
needs no nnU-Net trainer, so tools and tests build it from a model and a scheme alone.

Per step: the scheme's step on the loader's batch (labels removed: stage 1 never sees them) under autocast where
nnU-Net uses it (CUDA), backward (grad scaler on CUDA), the gradient norm of every parameter the optimiser trains
clipped, AdamW's step, then the scheme's on_step_end and, under DDP, its state merge. The optimiser settings are
the backbone's recipe (recipes.py: the scheme's own on CNNs, nnssl's on Primus).
"""
from typing import Optional

import torch
from nnunetv2.utilities.helpers import dummy_context
from torch import nn

from nnunet_anatomask.errors import PluginError
from nnunet_anatomask.pretraining.recipes import Stage1Recipe
from nnunet_anatomask.pretraining.schemes.base import Scheme, StepOutput
import nnunet_anatomask.trainers.stage1_ddp as stage1_ddp

LABELS = "target"  # the loader's label key: never handed to a scheme


class OptimizerStateMismatchError(PluginError, ValueError):
    """A stage-1 checkpoint's optimiser state does not fit this run's parameter groups."""


class Stage1Loop:
    """AdamW over the model and the scheme's heads by ``recipe``; compiled where ``compiled`` says (the runner
    passes nnU-Net's rule); under a process group the model and the scheme are one DDP module."""

    def __init__(self, model: nn.Module, scheme: Scheme, device: torch.device, recipe: Stage1Recipe,
                 compiled: bool = False):
        self.model, self.scheme, self.device, self.recipe = model, scheme, device, recipe
        self.optimizer = recipe.optimizer(list(model.parameters()) + scheme.trainable_parameters())
        self.grad_scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
        self.forward = model
        if compiled:
            self.forward = torch.compile(model)
            scheme.compile_()
        self.ddp: Optional[nn.Module] = stage1_ddp.wrap(model, scheme, self.forward, device)  # None in one process

    def set_lr(self, epoch: int, num_epochs: int) -> float:
        """The recipe's warm-up then cosine or poly (Stage1Recipe.lr_at); returns this epoch's lr."""
        lr = self.recipe.lr_at(epoch, num_epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def train_step(self, batch: dict, epoch: int) -> StepOutput:
        """One optimiser step on a loader batch; returns the scheme's output with the loss detached and the figures
        ``loss`` and ``nonfinite_steps`` added."""
        scheme_batch = {k: v for k, v in batch.items() if k != LABELS}
        scheme_batch["data"] = batch["data"].to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        cuda = self.device.type == "cuda"
        with torch.autocast("cuda", enabled=True) if cuda else dummy_context():  # as nnU-Net's train_step
            # a teacher forward runs in mixed precision too; under DDP the scheme's step runs inside the DDP module
            out = self.ddp(scheme_batch, epoch) if self.ddp is not None else \
                self.scheme.step(scheme_batch, self.forward, epoch)
        self.optimise(out.loss)
        self.scheme.on_step_end(epoch)
        stage1_ddp.sync_state(self.model, self.scheme)  # scheme buffers equal on every rank (no-op in one process)
        loss = out.loss.detach()
        figures = {"loss": loss, "nonfinite_steps": (~torch.isfinite(loss)).float(), **out.figures}
        return out._replace(loss=loss, figures=figures)

    def optimise(self, loss: torch.Tensor) -> None:
        """Backward (scaled on CUDA), clip the gradient norm of every parameter the optimiser trains, step."""
        scaler = self.grad_scaler
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None:
            scaler.unscale_(self.optimizer)
        trained = [p for group in self.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(trained, self.recipe.grad_clip)
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()

    def load_state(self, optimizer_state: dict, grad_scaler_state: Optional[dict], path: str) -> None:
        """A checkpoint's optimiser and grad-scaler state, or an error that names the fix when its parameter groups
        differ (a checkpoint written before the recipe split biases and norms into their own group, e.g.
        SelfMedHPM's)."""
        saved = [len(group["params"]) for group in optimizer_state["param_groups"]]
        ours = [len(group["params"]) for group in self.optimizer.param_groups]
        if saved != ours:
            raise OptimizerStateMismatchError(
                f"The stage-1 checkpoint {path} holds optimiser state for parameter groups of sizes {saved}, this "
                f"run's optimiser has {ours}: it was written by an earlier version with another optimiser recipe. "
                f"Fix: finish that stage 1 with the version that wrote it, or start stage 1 anew (remove {path}).")
        self.optimizer.load_state_dict(optimizer_state)
        if self.grad_scaler is not None and grad_scaler_state is not None:
            self.grad_scaler.load_state_dict(grad_scaler_state)
