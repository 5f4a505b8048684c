"""The CNN's stage-1 model: SparK's masked encoder + per-stage mask tokens + the plans' own dense decoder.

SparK (Tian et al., ICLR 2023; keyu-tian/SparK ``pretrain/spark.py``) fills the masked positions of every encoder
stage with a learned mask token and runs a dense decoder; the sparse encoder is the module swap of
``masked_forward.py``. Here the decoder is the plans' own ``UNetDecoder`` and its full-resolution ``seg_layers``,
so every weight but the output layer has the segmentation network's shape.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from nnunet_anatomask.pretraining.backbones.base import Encoding, MaskedModel
from nnunet_anatomask.pretraining.backbones.cnn.grid import stage_at_cells
from nnunet_anatomask.pretraining.backbones.cnn.masked_forward import (MaskedForwardError, encoder_of,
                                                                       masked_modules, set_visibility_, sparsify_)
from nnunet_anatomask.pretraining.grid import MaskGrid


class MaskedReconstructionModel(MaskedModel):
    """SparK's masked encoder + mask tokens + dense decoder, on the plans' own network.

    ``network`` must be built from the plans with ``num_classes`` = number of input channels and
    ``deep_supervision=False``; its decoder and full-resolution ``seg_layers`` reconstruct the image.
    """

    extra_state = ("mask_tokens",)

    def __init__(self, network: nn.Module, grid: MaskGrid) -> None:
        _check_reconstruction_network(network)
        super().__init__(sparsify_(network, grid), grid)
        self.mask_stage = stage_at_cells(network.encoder.strides, grid)
        self.mask_tokens = nn.ParameterList([_mask_token(c) for c in network.encoder.output_channels])
        self._masked_modules = masked_modules(network)  # plain list: the modules live under self.network

    @property
    def encoder_channels(self) -> list[int]:
        return list(self.network.encoder.output_channels)

    @property
    def cell_channels(self) -> int:
        return self.encoder_channels[self.mask_stage]

    @property
    def decoder_channels(self) -> list[int]:
        return [stage.output_channels for stage in self.network.decoder.stages]

    def encode(self, images: torch.Tensor, cell_mask: Optional[torch.Tensor]) -> Encoding:
        """Masked encoder skips, exactly 0 at masked positions (SparK ``SparseEncoder`` + input masking)."""
        if tuple(images.shape[2:]) != self.grid.patch_size:
            raise MaskedForwardError(f"images of spatial shape {tuple(images.shape[2:])} do not match the mask "
                                     f"grid's patch size {self.grid.patch_size}: feed patches of the plans' size")
        set_visibility_(self._masked_modules, self.grid, cell_mask)
        if cell_mask is not None:
            images = torch.where(self.grid.to_voxels(cell_mask), 0.0, images)  # SparK: inp_bchw * active_b1hw
        skips = list(self.network.encoder(images))
        return Encoding(skips, skips[self.mask_stage])

    def decode(self, encoding: Encoding, cell_mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Mask tokens at every stage's masked positions, then every stage of the plans' decoder (dna
        ``UNetDecoder.forward``'s loop, without deep supervision's extra outputs; coarse to fine) and the output
        layer. Ours: no densify norm / projection between encoder and decoder (SparK has both), so that the nnU-Net
        decoder consumes the skips as in segmentation and its weights transfer unchanged."""
        skips = encoding.stages
        if cell_mask is not None:
            skips = [self._fill_masked(skip, cell_mask, token) for skip, token in zip(skips, self.mask_tokens)]
        decoder, x, outputs = self.network.decoder, skips[-1], []
        for s, stage in enumerate(decoder.stages):
            x = stage(torch.cat((decoder.transpconvs[s](x), skips[-(s + 2)]), 1))
            outputs.append(x)
        return decoder.seg_layers[-1](outputs[-1]), outputs

    def _fill_masked(self, skip: torch.Tensor, cell_mask: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        """SparK: ``torch.where(cur_active, bcff, mask_tokens)`` at this stage's resolution."""
        visible = self.grid.visible_at(cell_mask, skip.shape[2:]) > 0.5
        return torch.where(visible, skip, token.to(skip.dtype).view((1, -1) + (1,) * (skip.ndim - 2)))


def _mask_token(channels: int) -> nn.Parameter:
    """SparK: ``trunc_normal_(p, mean=0, std=.02, a=-.02, b=.02)``; ours: shape [C] rather than [1, C, 1, 1]."""
    token = nn.Parameter(torch.zeros(channels))
    nn.init.trunc_normal_(token, mean=0.0, std=0.02, a=-0.02, b=0.02)
    return token


def _check_reconstruction_network(network: nn.Module) -> None:
    encoder, decoder = encoder_of(network), network.decoder
    if getattr(decoder, "deep_supervision", False):
        raise MaskedForwardError("the stage-1 network has deep supervision on: build it with "
                                 "get_network_from_plans(..., deep_supervision=False)")
    in_channels = next(m for m in encoder.modules() if isinstance(m, _ConvNd)).in_channels
    out_channels = getattr(decoder, "num_classes", in_channels)
    if out_channels != in_channels:
        raise MaskedForwardError(f"the stage-1 network outputs {out_channels} channels for {in_channels} input "
                                 "channels: build it with num_classes (output_channels) = number of input channels")
