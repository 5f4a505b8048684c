"""The CNN backbone: nnU-Net's PlainConvUNet / ResidualEncoderUNet under SparK's sparse-convolution emulation.

The emulation lives in ``masked_forward.py`` (SparK, Tian et al., ICLR 2023), the stage-1 model in ``model.py``, the
cell size rule in ``grid.py``; this module derives the mask grid from the built network and hands the stage-1
weights to stage 2 through nnU-Net's own ``load_pretrained_weights`` (every key but ``.seg_layers.``, so nnU-Net's
``-pretrained_weights`` takes them too).
"""
from __future__ import annotations

from torch import nn
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

from nnunet_anatomask.checkpoint_io import SKIPPED_IN_HANDOVER
from nnunet_anatomask.pretraining.backbones.base import Backbone, register_backbone, unwrapped
from nnunet_anatomask.pretraining.backbones.cnn.grid import cnn_grid
from nnunet_anatomask.pretraining.backbones.cnn.masked_forward import is_unet_like
from nnunet_anatomask.pretraining.backbones.cnn.model import MaskedReconstructionModel
from nnunet_anatomask.pretraining.grid import MaskGrid
from nnunet_anatomask.pretraining.recipes import Stage1Recipe


@register_backbone
class CNNBackbone(Backbone):
    name = "cnn (SparK emulation: PlainConvUNet, ResidualEncoderUNet)"

    @classmethod
    def accepts(cls, network: nn.Module) -> bool:
        return is_unet_like(network)

    def make_grid(self, network: nn.Module, patch_size: tuple[int, ...]) -> MaskGrid:
        """Cell = cumulative stride of one encoder stage (grid.py), read from the built encoder's strides."""
        return cnn_grid(patch_size, network.encoder.strides)

    def masked_model(self, network: nn.Module, recipe: Stage1Recipe) -> MaskedReconstructionModel:
        """The SparK emulation around ``network`` (nnU-Net's CNNs have no stochastic depth: ``recipe`` has none)."""
        return MaskedReconstructionModel(network, self.grid)

    def handover(self, checkpoint_path: str, network: nn.Module) -> list[str]:
        load_pretrained_weights(network, checkpoint_path, verbose=False)
        return [k for k in unwrapped(network).state_dict() if not any(s in k for s in SKIPPED_IN_HANDOVER)]
