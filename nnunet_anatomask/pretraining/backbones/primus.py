"""The ViT backbone: nnU-Net's Primus (Wald et al., 2025; dynamic-network-architectures) pretrained MAE-style.

MAE (He et al., CVPR 2022; facebookresearch/mae ``models_mae.py``): masked tokens are dropped before the encoder,
which processes only the visible ones (its cost falls with 1 - mask ratio); a light decoder sees every position,
mask tokens where the encoder saw nothing, and reconstructs. Here the encoder is Primus' own: its patch embedding
(the mask cell = the patch-embedding size, 8³), absolute position embedding, rotary position embedding (kept in
step with the kept tokens) and EVA blocks; the light decoder is two EVA blocks of the encoder's width (nnssl's
EvaMAE: decoder depth 2) before Primus' own patch decoder (``up_projection``). Drop and restore are one batched
gather / scatter each (Primus' ``restore_full_sequence`` loops over the samples). Stage 1 follows nnssl's recipe
for Primus (recipes.NNSSL_EVA_MAE): its optimiser, mask ratio 0.75 and stochastic depth 0.2 in encoder and decoder;
the setting ``primus_recipe`` "scheme" takes the scheme's own recipe instead (no stochastic depth).
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn
from timm.layers import DropPath, apply_keep_indices_nlc, trunc_normal_

from nnunet_anatomask.checkpoint_io import load_checkpoint_file
from nnunet_anatomask.pretraining.backbones.base import (Backbone, BackboneError, Encoding, MaskedModel,
                                                          register_backbone, unwrapped)
from nnunet_anatomask.pretraining.grid import MaskGrid
from nnunet_anatomask.pretraining.recipes import NNSSL_EVA_MAE, Stage1Recipe

DECODER_DEPTH = 2  # nnssl's EvaMAE (decoder_eva_depth 2, the encoder's width); MAE's is 8 blocks of width 512
DECODER = "up_projection."  # Primus' patch decoder: every width depends on the number of output channels


def is_primus(network: nn.Module) -> bool:
    """dynamic-network-architectures' Primus: a patch embedding, an EVA encoder, a patch decoder."""
    return all(hasattr(network, a) for a in ("down_projection", "eva", "up_projection"))


@register_backbone
class PrimusBackbone(Backbone):
    name = "primus (MAE token dropping: Primus ViT)"

    @classmethod
    def accepts(cls, network: nn.Module) -> bool:
        return is_primus(network)

    def make_grid(self, network: nn.Module, patch_size: tuple[int, ...]) -> MaskGrid:
        cell = tuple(int(k) for k in network.down_projection.proj.kernel_size)
        if len(patch_size) != 3:
            raise BackboneError(f"Primus is a 3D network, but the patch size is {patch_size}: use a 3d_fullres (or "
                                "3d_lowres) configuration with Primus trainers")
        if getattr(network, "register_tokens", None) is not None:
            raise BackboneError("Primus with register tokens is not supported by token-dropping pretraining: build "
                                "it with num_register_tokens=0 (nnU-Net's Primus trainers do)")
        return MaskGrid(patch_size, cell)  # one cell = one token; MaskGrid checks divisibility, >= 2 per axis

    def masked_model(self, network: nn.Module, recipe: Stage1Recipe) -> "TokenDroppingModel":
        """Token dropping around ``network``, with the ``recipe``'s stochastic depth (nnssl's 0.2; none in a
        scheme's own recipe)."""
        return TokenDroppingModel(network, self.grid, drop_path_rate=recipe.drop_path_rate)

    def recipe(self, own: Stage1Recipe) -> Stage1Recipe:
        """nnssl's recipe for every scheme on Primus unless the settings decline it (``primus_recipe`` "scheme");
        docs/backbones.md: why, and what each scheme keeps."""
        return NNSSL_EVA_MAE

    def handover(self, checkpoint_path: str, network: nn.Module) -> list[str]:
        """Every stage-1 tensor whose name and shape the stage-2 Primus shares: the encoder (patch embedding,
        position embedding, EVA blocks). Primus' patch decoder has widths that depend on the class count, so it
        starts fresh unless stage 1 and 2 happen to have as many output channels."""
        weights = load_checkpoint_file(checkpoint_path, "stage-1 checkpoint")["network_weights"]
        target = unwrapped(network)
        state = target.state_dict()
        moved = {k: v for k, v in weights.items() if k in state and state[k].shape == v.shape}
        missing = [k for k in state if k not in moved and not k.startswith(DECODER)]
        if missing:
            raise BackboneError(f"the stage-1 checkpoint {checkpoint_path} does not fit this Primus: '{missing[0]}' "
                                f"is missing or has another shape. Fix: pretrain with the same Primus trainer size "
                                f"(S/B/M/L), plans and configuration")
        target.load_state_dict(moved, strict=False)
        return sorted(moved)


def set_stochastic_depth(blocks: nn.ModuleList, rate: float) -> None:
    """Drop-path rates rising linearly from 0 to ``rate`` over ``blocks`` (timm's Eva and nnssl's EvaMAE
    decoder: np.linspace(0, drop_path_rate, depth)); identity where the rate is 0."""
    for block, block_rate in zip(blocks, torch.linspace(0, rate, len(blocks)).tolist()):
        block.drop_path1 = block.drop_path2 = DropPath(block_rate) if block_rate > 0 else nn.Identity()


def visible_indices(cell_mask: torch.Tensor) -> torch.Tensor:
    """[B, n_visible] indices of the visible cells, in cell order (MAE: ids_keep). Token dropping needs the same
    number of masked cells in every sample, as every scheme's mask has; one host sync reads that number."""
    flat = cell_mask.reshape(cell_mask.shape[0], -1)
    counts = flat.sum(1).tolist()
    if len(set(counts)) != 1:
        raise BackboneError(f"token dropping needs the same number of masked cells in every sample, got {counts}: "
                            "the scheme must mask a fixed number of cells per sample")
    return torch.argsort(flat.to(torch.uint8), dim=1, stable=True)[:, : flat.shape[1] - counts[0]]


class TokenDroppingModel(MaskedModel):
    """Primus with MAE's token dropping (the masked-model contract of backbones/base.py)."""

    extra_state = ("mask_token", "decoder_blocks", "decoder_norm")

    def __init__(self, network: nn.Module, grid: MaskGrid, decoder_depth: int = DECODER_DEPTH,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__(network, grid)
        eva = network.eva
        width = network.embed_dim
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        trunc_normal_(self.mask_token, std=0.02)  # MAE: normal_(std=.02)
        self.decoder_blocks = nn.ModuleList(copy.deepcopy(eva.blocks[-1]) for _ in range(decoder_depth))
        self.decoder_blocks.apply(eva._init_weights)  # fresh weights, the encoder's block design
        self.decoder_norm = nn.LayerNorm(width)
        set_stochastic_depth(eva.blocks, drop_path_rate)
        set_stochastic_depth(self.decoder_blocks, drop_path_rate)

    @property
    def encoder_channels(self) -> list[int]:
        return [self.network.embed_dim]

    @property
    def cell_channels(self) -> int:
        return self.network.embed_dim

    @property
    def decoder_channels(self) -> list[int]:
        return [self.network.embed_dim]

    def encode(self, images: torch.Tensor, cell_mask: Optional[torch.Tensor]) -> Encoding:
        """The EVA encoder on the visible tokens only; its output on the token grid, zero at dropped tokens."""
        keep = None if cell_mask is None else visible_indices(cell_mask)
        x = self.encode_tokens(self.embed(images), keep)
        if keep is not None:
            x = self.restore(x, keep, torch.zeros_like(self.mask_token, dtype=x.dtype))
        grid = self.to_grid(x)
        return Encoding([grid], grid)

    def encode_tokens(self, tokens: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
        """The EVA encoder on the tokens ``[B, N, C]`` at ``keep`` ``[B, n]`` (all when None), in that order, with
        their rotary embedding (MAE forward_encoder: x = torch.gather(x, 1, ids_keep)); returns ``[B, n, C]``."""
        x = tokens if keep is None else tokens.gather(1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        rope = self.rope(keep, x)
        for block in self.network.eva.blocks:
            x = block(x, rope=rope)
        return self.network.eva.norm(x)

    def decode(self, encoding: Encoding, cell_mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Mask tokens at the dropped positions, the light decoder on every position (MAE forward_decoder:
        decoder_pos_embed, blocks, norm; ours: the encoder's absolute and rotary position embeddings), then
        Primus' patch decoder."""
        full = encoding.cells.flatten(2).transpose(1, 2)  # [B, N, C]
        if cell_mask is not None:
            dropped = cell_mask.reshape(cell_mask.shape[0], -1, 1)
            full = torch.where(dropped, self.mask_token.to(full.dtype), full)
        pos_embed = self.network.eva.pos_embed
        x = full if pos_embed is None else full + pos_embed
        rope = self.rope(None, x)
        for block in self.decoder_blocks:
            x = block(x, rope=rope)
        decoded = self.to_grid(self.decoder_norm(x))
        return self.network.up_projection(decoded), [decoded]

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[2:]) != self.grid.patch_size:
            raise BackboneError(f"images of spatial shape {tuple(images.shape[2:])} do not match the patch size "
                                f"{self.grid.patch_size}: feed patches of the plans' size")
        tokens = self.network.down_projection(images).flatten(2).transpose(1, 2)  # Primus: b c w h d -> b (w h d) c
        pos_embed = self.network.eva.pos_embed
        return tokens if pos_embed is None else tokens + pos_embed

    def rope(self, keep: Optional[torch.Tensor], like: torch.Tensor) -> Optional[torch.Tensor]:
        """Rotary embedding of the kept tokens [B, 1, n, D] (broadcast over heads), or of all tokens [N, D]."""
        rope = self.network.eva.rope
        if rope is None:
            return None
        embed = rope.get_embed()
        return embed if keep is None else apply_keep_indices_nlc(like, embed, keep).unsqueeze(1)

    def restore(self, encoded: torch.Tensor, keep: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
        """[B, N, C]: the encoded tokens at their positions, ``fill`` elsewhere (one batched scatter)."""
        batch, width = encoded.shape[0], encoded.shape[-1]
        full = fill.expand(batch, self.grid.num_cells, width).clone()
        return full.scatter(1, keep.unsqueeze(-1).expand(-1, -1, width), encoded)

    def to_grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, N, C] -> [B, C, *cells_per_axis]."""
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[-1], *self.grid.cells_per_axis)
