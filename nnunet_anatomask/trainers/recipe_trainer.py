"""A stage-2 recipe as a mixin in front of our stage-2 trainer (docs/recipes.md).

``RecipeMixin`` comes first in the bases of a recipe's stage-2 class (``(RecipeMixin, nnUNetTrainerStage2Recipe[,
nnUNet_Primus_<size>_Trainer])``), so its ``configure_optimizers`` replaces nnUNetTrainer_warmup's / AbstractPrimus'
and its start lr follows their ``__init__``; the knob ``nnUNet_anatomask_finetune_lr`` still wins. The optimiser is
the base recipe's (SGD with Nesterov momentum 0.99 on the CNN, AdamW with betas (0.9, 0.98) on Primus, the base's
weight decay), built over the parameters the current phase trains (a frozen encoder costs no backward pass);
between phases that train the
same parameters the optimiser is kept (its momentum, as nnssl keeps it from warm-up to training). Frozen parameters
have ``requires_grad`` off, so they get no gradient: nnU-Net's gradient-norm clip sees only what trains (nnssl
leaves them on and out of the optimiser, where their gradients pile up unzeroed and count in the clip; ours).
"""
from __future__ import annotations

from typing import ClassVar, Optional

import torch
from nnunetv2.training.nnUNetTrainer.primus.primus_trainers import AbstractPrimus
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager
from torch.nn.parallel import DistributedDataParallel as DDP

from nnunet_anatomask import knobs
from nnunet_anatomask.trainers.layer_decay import layer_groups
from nnunet_anatomask.trainers.recipe_schedule import PhaseLR, RecipeError, phase_bounds
from nnunet_anatomask.recipes import ALL, CNN, DECODER, HEAD, PRIMUS, Phase, Recipe
from nnunet_anatomask.transfer.load import plain
from nnunet_anatomask.transfer.parts import DECODER as DECODER_PART, output_layer, part_of, under


def backbone_of(trainer) -> str:
    return PRIMUS if isinstance(trainer, AbstractPrimus) else CNN


def trained_names(network: torch.nn.Module, trains: str) -> list[str]:
    """The parameters a phase trains: every one, the decoder's (output layer included) or the output layer's."""
    names = [n for n, _ in network.named_parameters()]
    if trains == ALL:
        return names
    if trains == DECODER:
        return [n for n in names if part_of(network, n) == DECODER_PART]
    if trains == HEAD:
        return [n for n in names if under(n, output_layer(network))]
    raise RecipeError(f"unknown phase part {trains!r}")


class RecipeMixin:
    """Stage 2 by ``recipe``: its phases, start lr, batch size, deep supervision and pretrained parts."""

    recipe: ClassVar[Recipe]

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        backbone = backbone_of(self)
        if knobs.read_lr(knobs.FINETUNE_LR) is None and self.recipe.lr(backbone) is not None:
            self.initial_lr = self.recipe.lr(backbone)
        if self.recipe.deep_supervision is not None:
            self.enable_deep_supervision = self.recipe.deep_supervision
        self.phases: list[Phase] = list(self.recipe.phases)
        self.bounds = phase_bounds(self.phases, self.num_epochs)
        self.trained: Optional[frozenset] = None   # names the current optimiser trains

    def check_setup(self) -> None:
        """A run too short for every phase, or a recipe for another backbone, is refused before any work."""
        super().check_setup()
        backbone = backbone_of(self)
        if backbone not in self.recipe.backbones:
            raise RecipeError(f"the recipe '{self.recipe.suffix}' is for {', '.join(self.recipe.backbones)}, not "
                              f"{backbone}")
        try:
            phase_bounds(self.recipe.phases, knobs.read_knob(knobs.FINETUNE_EPOCHS))
        except RecipeError as e:
            raise RecipeError(f"{type(self).__name__}: {e}. Fix: set {knobs.FINETUNE_EPOCHS} to at least "
                              f"{len(self.recipe.phases)}.") from None

    def pretrained_loading(self) -> str:
        """'encoder' or 'all': the knob nnUNet_anatomask_pretrained_parts, else the recipe's default."""
        return knobs.pretrained_parts() or self.recipe.loading

    # --- stage 2's batch --------------------------------------------------------------------------------
    def initialize(self):
        """nnU-Net's initialize with the recipe's batch size: stage 2 reads it from this trainer's configuration
        (stage 1, run before, used the plans' own; the saved plans keep it)."""
        if self.recipe.batch_size is not None and not self.was_initialized:
            self.configuration_manager = ConfigurationManager(
                {**self.configuration_manager.configuration, "batch_size": self.recipe.batch_size})
        super().initialize()

    # --- phases -------------------------------------------------------------------------------------------
    def phase_at(self, epoch: int) -> int:
        return next(i for i, (_, end) in enumerate(self.bounds) if epoch < end or i == len(self.bounds) - 1)

    def configure_optimizers(self, stage: Optional[str] = None):
        """The optimiser and lr schedule of the phase at the current epoch (nnU-Net's stage names are ignored)."""
        return self.configure_phase(self.phase_at(self.current_epoch))

    def optimiser_for_checkpoint(self):
        """A checkpoint written before ``current_epoch`` holds the optimiser of the phase of the epoch before."""
        return self.configure_phase(self.phase_at(max(self.current_epoch - 1, 0)))

    def on_train_epoch_start(self):
        self.optimizer, self.lr_scheduler = self.configure_optimizers()
        super().on_train_epoch_start()

    def configure_phase(self, index: int):
        phase, (start, end) = self.phases[index], self.bounds[index]
        if self.training_stage == phase.name:
            return self.optimizer, self.lr_scheduler
        network = plain(self.network)
        names = frozenset(trained_names(network, phase.trains))
        for name, parameter in network.named_parameters():
            parameter.requires_grad_(name in names)
            if name not in names:
                parameter.grad = None
        if self.trained == names and self.optimizer is not None:
            optimizer = self.optimizer
        else:
            optimizer = self.make_optimizer(network, [n for n, _ in network.named_parameters() if n in names])
        if isinstance(self.network, DDP) and self.trained is not None and not names <= self.trained:
            # DDP registers the parameters that require gradients when it wraps the network: wrap again, as nnU-Net's
            # initialize() does, so the newly trained ones are averaged over the ranks too (untested: no GPUs here)
            self.network = DDP(self.network.module, device_ids=[self.local_rank])
        peak = self.initial_lr * phase.factor(backbone_of(self))
        scheduler = PhaseLR(optimizer, phase.shape, peak, start, end)
        self.print_to_log_file(
            f"Recipe {self.recipe.suffix}, phase {phase.name} (epochs {start}-{end - 1}): trains {phase.trains} "
            f"({len(names)} of {len(list(network.parameters()))} tensors), {phase.shape} to lr {peak:g}")
        self.training_stage, self.trained = phase.name, names
        return optimizer, scheduler

    def make_optimizer(self, network: torch.nn.Module, names: list[str]) -> torch.optim.Optimizer:
        """The base recipe's optimiser over ``names`` (with MAE's layer-wise lr scales if the recipe has them)."""
        params = dict(network.named_parameters())
        if self.recipe.layer_decay is not None:
            groups = layer_groups(network, names, self.recipe.layer_decay)
        else:
            groups = [{"params": [params[n] for n in names]}]
        if backbone_of(self) == PRIMUS:  # AbstractPrimus.configure_optimizers
            return torch.optim.AdamW(groups, self.initial_lr, weight_decay=self.weight_decay, amsgrad=False,
                                     betas=(0.9, 0.98), fused=True)
        return torch.optim.SGD(groups, self.initial_lr, weight_decay=self.weight_decay, momentum=0.99,
                               nesterov=True)  # nnUNetTrainer_warmup.configure_optimizers
