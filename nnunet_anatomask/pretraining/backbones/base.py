"""The backbone interface and the masked-model contract: what depends on the network family, behind two small
classes (docs/architecture.md).

A backbone turns a network built by the trainer (``build_network_architecture``, with the stage-1 channel count and
no deep supervision) into a ``MaskedModel`` and its mask grid, and says how stage-1 weights go into stage 2. The
runner and the schemes never name a network class: a scheme chooses cells, the backbone decides how a cell mask is
applied (SparK emulation on CNNs; token dropping on ViTs). Backbones register themselves with ``register_backbone``
when ``pretraining.backbones`` is imported.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple, Optional, Sequence, Union

import torch
from torch import nn

from nnunet_anatomask.errors import PluginError
from nnunet_anatomask.pretraining.grid import MaskGrid
from nnunet_anatomask.pretraining.recipes import Stage1Recipe


class BackboneError(PluginError, ValueError):
    """No backbone can pretrain this network, or a model cannot take what it was given; the message names the fix."""


class Encoding(NamedTuple):
    """The encoder's output for a batch: exactly 0 at masked positions (before any mask token).

    stages: the encoder's feature maps ``[B, C_s, *spatial_s]``, fine to coarse (``stages[-1]`` is the deepest);
        one map on a ViT (the token grid).
    cells: ``[B, C, *cells_per_axis]``, the encoder's features at the resolution of the mask cells.
    """

    stages: list[torch.Tensor]
    cells: torch.Tensor


class MaskedOutput(NamedTuple):
    """What a masked model returns with ``features=True`` (one forward, no hooks).

    reconstruction: ``[B, C_in, *patch]``, in the per-cell normalised space of the target.
    encoding: the encoder's output (``Encoding``).
    decoder_features: per decoder stage, coarse to fine, before the output layer.
    """

    reconstruction: torch.Tensor
    encoding: Encoding
    decoder_features: list[torch.Tensor]


class MaskedModel(nn.Module, ABC):
    """The contract every backbone's stage-1 model keeps (docs/architecture.md, "The masked-model contract").

    ``network`` is the trainer's network (its state dict is the checkpoint's ``network_weights``); the submodules
    named in ``extra_state`` are the rest of the model's state (mask tokens, a light decoder), saved apart because
    stage 2 has no use for them. A cell mask is ``[B, *cells_per_axis]`` bool, True = masked; ``None`` = nothing
    masked (the dense forward).
    """

    extra_state: ClassVar[tuple[str, ...]]  # submodules and parameters outside `network`, saved as model_extra

    def __init__(self, network: nn.Module, grid: MaskGrid) -> None:
        super().__init__()
        self.network, self.grid = network, grid

    def forward(self, images: torch.Tensor, cell_mask: Optional[torch.Tensor],
                features: bool = False) -> Union[torch.Tensor, MaskedOutput]:
        """The reconstruction ``[B, C_in, *patch]`` from the visible cells; with ``features=True`` a
        ``MaskedOutput`` that also holds the encoding and the decoder's stage outputs, from the same forward."""
        encoding = self.encode(images, cell_mask)
        reconstruction, decoder_features = self.decode(encoding, cell_mask)
        return MaskedOutput(reconstruction, encoding, decoder_features) if features else reconstruction

    @abstractmethod
    def encode(self, images: torch.Tensor, cell_mask: Optional[torch.Tensor]) -> Encoding:
        """The encoder alone on the visible cells (no decoder runs)."""

    @abstractmethod
    def decode(self, encoding: Encoding, cell_mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Mask tokens where the encoder saw nothing, the decoder: (reconstruction, decoder stage outputs)."""

    @property
    @abstractmethod
    def encoder_channels(self) -> list[int]:
        """Channels of ``Encoding.stages``, fine to coarse (to size a scheme's heads)."""

    @property
    @abstractmethod
    def cell_channels(self) -> int:
        """Channels of ``Encoding.cells``."""

    @property
    @abstractmethod
    def decoder_channels(self) -> list[int]:
        """Channels of the decoder stage outputs, coarse to fine."""

    def extra_state_dict(self) -> dict[str, torch.Tensor]:
        """The declared extra state (``extra_state``), detached copies; everything but ``network`` is declared."""
        state = self.state_dict()
        undeclared = [k for k in state if k.split(".")[0] not in ("network", *self.extra_state)]
        if undeclared:
            raise BackboneError(f"{type(self).__name__} holds state that is neither network weights nor declared "
                                f"extra state: {undeclared[:3]}. Fix: add its name to {type(self).__name__}."
                                "extra_state")
        return {k: v.detach().clone() for k, v in state.items() if k.split(".")[0] in self.extra_state}

    def load_extra_state_dict(self, saved: dict[str, torch.Tensor]) -> None:
        """Load what ``extra_state_dict`` returned (strict: the same names and shapes)."""
        own = self.extra_state_dict()
        wrong = sorted(set(saved) ^ set(own)) + sorted(k for k in own if k in saved and saved[k].shape != own[k].shape)
        if wrong:
            raise BackboneError(f"the stage-1 checkpoint's extra model state ({', '.join(self.extra_state)}) does not "
                                f"fit this {type(self).__name__}: '{wrong[0]}' is missing, unexpected or of another "
                                "shape. Fix: resume with the same trainer, plans and configuration")
        self.load_state_dict(saved, strict=False)


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
    def masked_model(self, network: nn.Module, recipe: Stage1Recipe) -> MaskedModel:
        """The stage-1 model around ``network``, with the run's ``recipe``'s stochastic depth where it has one."""

    def recipe(self, own: Stage1Recipe) -> Stage1Recipe:
        """This network family's stage-1 optimiser recipe, given the scheme's ``own`` (its settings'
        ``SchemeConfig.recipe``; recipes.py): ``own`` unless the family has its own (Primus: nnssl's, which
        the setting ``primus_recipe`` "scheme" declines: settings.run_settings)."""
        return own

    @abstractmethod
    def handover(self, checkpoint_path: str, network: nn.Module) -> list[str]:
        """Load the stage-1 weights of ``checkpoint_path`` into the stage-2 ``network``; returns the loaded keys."""


BACKBONES: list[type[Backbone]] = []


def register_backbone(cls: type[Backbone]) -> type[Backbone]:
    """Class decorator: make a backbone available to ``backbone_for``."""
    if cls not in BACKBONES:
        BACKBONES.append(cls)
    return cls


def backbone_for(network: nn.Module, patch_size: Sequence[int]) -> Backbone:
    """The backbone that accepts ``network`` (built by the trainer), with its grid for ``patch_size``."""
    for cls in BACKBONES:
        if cls.accepts(network):
            return cls(network, patch_size)
    known = ", ".join(cls.name for cls in BACKBONES)
    raise BackboneError(f"masked pretraining has no backbone for {type(network).__name__} (known: {known}). Fix: "
                        "use plans and a trainer whose build_network_architecture builds one of these networks "
                        "(nnU-Net's PlainConvUNet or ResidualEncoderUNet).")


def unwrapped(network: nn.Module) -> nn.Module:
    """The plain network inside nnU-Net's DDP and torch.compile wrappers (DDP(compile(net)), as nnU-Net nests)."""
    network = getattr(network, "module", network)
    return getattr(network, "_orig_mod", network)
