"""The backbone interface: what depends on the network family, behind one small class (docs/architecture.md).

A backbone turns a network built by the trainer (``build_network_architecture``, with the stage-1 channel count
and no deep supervision) into a masked model and its mask grid, and says how stage-1 weights go into stage 2.
The runner and the schemes never name a network class: a scheme chooses cells, the backbone decides how a cell
mask is applied (SparK emulation on CNNs; token dropping on ViTs).
"""
from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple, Sequence

import torch
from torch import nn

from nnunet_anatomask.errors import PluginError
from nnunet_anatomask.pretraining.grid import MaskGrid
from nnunet_anatomask.pretraining.recipes import Stage1Recipe


class MaskedOutput(NamedTuple):
    """What a masked model returns with ``features=True`` (one forward, no hooks).

    reconstruction: ``[B, C_in, *patch]``, in the per-cell normalised space of the target.
    encoder_skips: per encoder stage, fine to coarse, masked (exactly 0 at masked positions), before mask tokens.
    decoder_features: per decoder stage, coarse to fine, before the output layer.
    """

    reconstruction: torch.Tensor
    encoder_skips: list[torch.Tensor]
    decoder_features: list[torch.Tensor]


class BackboneError(PluginError, ValueError):
    """No backbone can pretrain this network; the message names the network and the fix."""


class Backbone(ABC):
    """One network family. Subclasses set ``name`` and implement the four methods below; ``recipe`` is the
    scheme's own unless the family has its own (Primus: nnssl's)."""

    name: ClassVar[str]

    def __init__(self, network: nn.Module, patch_size: Sequence[int]) -> None:
        """``network`` may live on the meta device: only its structure is read (mask grid, checks)."""
        self.grid = self.make_grid(network, tuple(int(p) for p in patch_size))

    @classmethod
    @abstractmethod
    def accepts(cls, network: nn.Module) -> bool:
        """True if this backbone knows how to mask ``network``."""

    @abstractmethod
    def make_grid(self, network: nn.Module, patch_size: tuple[int, ...]) -> MaskGrid:
        """The mask grid of ``network`` at ``patch_size`` (MaskGridError with the fix if there is none)."""

    @abstractmethod
    def masked_model(self, network: nn.Module) -> nn.Module:
        """The stage-1 model around ``network``: ``model(images, cell_mask, features=False)`` returns the
        reconstruction, or a ``MaskedOutput`` with ``features=True``; ``model.network`` is ``network`` (its state
        dict is the checkpoint's ``network_weights``); ``model.extra_state_dict()`` / ``load_extra_state_dict``
        hold the rest (mask tokens, decoder parts that do not go to stage 2); ``model.encoder_channels`` and
        ``model.decoder_channels`` give the channels of the features, so schemes can size their heads."""

    def recipe(self, scheme_class) -> Stage1Recipe:
        """Stage 1's optimiser recipe for ``scheme_class`` on this network family (recipes.py)."""
        return scheme_class.recipe()

    @abstractmethod
    def handover(self, checkpoint_path: str, network: nn.Module) -> list[str]:
        """Load the stage-1 weights of ``checkpoint_path`` into the stage-2 ``network``; returns the loaded keys."""


BACKBONES: list[type[Backbone]] = []


def register_backbone(cls: type[Backbone]) -> type[Backbone]:
    """Class decorator: make a backbone available to ``backbone_for``."""
    if cls not in BACKBONES:
        BACKBONES.append(cls)
    return cls


def import_backbones() -> None:
    """Import every module of this package once, so that each registers its backbone."""
    package = __name__.rsplit(".", 1)[0]
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{module.name}")


def backbone_for(network: nn.Module, patch_size: Sequence[int]) -> Backbone:
    """The backbone that accepts ``network`` (built by the trainer), with its grid for ``patch_size``."""
    import_backbones()
    for cls in BACKBONES:
        if cls.accepts(network):
            return cls(network, patch_size)
    known = ", ".join(cls.name for cls in BACKBONES)
    raise BackboneError(f"masked pretraining has no backbone for {type(network).__name__} (known: {known}). Fix: "
                        "use plans and a trainer whose build_network_architecture builds one of these networks "
                        "(nnU-Net's PlainConvUNet or ResidualEncoderUNet).")
