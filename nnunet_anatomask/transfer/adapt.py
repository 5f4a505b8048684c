"""Tensors of another shape made to fit (the adapting transfer, docs/recipes.md). Each function is one rule.

- ``spread_channels``: an input convolution pretrained on M channels, for N: W'[:, n] = sum_m W[:, m] / N for every
  n. The response to an image whose N channels are equal is the pretrained response to that image on M equal
  channels. For M = 1 this is nnU-Net main's rule (``PretrainedTrainer.load_pretrained_weights``: repeat, divide by
  N); for M > 1 it is ours.
- ``resize_kernel``: a convolution kernel of another size, axis by axis. A larger kernel gets the pretrained one at
  its centre and zeros around it: the same function. To size 1 the taps are averaged (nnU-Net main's
  ``adapt_conv_kernel_size``): the response to content that is constant along that axis, up to a factor that the
  following instance norm removes. To another smaller size the centre is cropped (ours).
- ``resize_position_embedding``: Primus' learned position embedding of one token grid, interpolated trilinearly to
  another (nnU-Net main's ``handle_pos_embed_resize`` with ``interpolate_trilinear``).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def spread_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """[out, M, *kernel] -> [out, channels, *kernel]: the sum over the M channels, divided evenly over ``channels``."""
    summed = weight.sum(dim=1, keepdim=True)
    return summed.repeat(1, channels, *[1] * (weight.ndim - 2)) / channels


def resize_kernel(weight: torch.Tensor, kernel: Sequence[int]) -> torch.Tensor:
    """[out, in, *k] -> [out, in, *kernel]: per axis zero-padded around the centre (larger), averaged (to 1) or
    centre-cropped (smaller)."""
    if len(kernel) != weight.ndim - 2:
        raise ValueError(f"kernel {tuple(kernel)} has {len(kernel)} axes, the weight {weight.ndim - 2}")
    out = weight
    for axis, size in enumerate(kernel):
        dim, old = axis + 2, out.shape[axis + 2]
        if size > old:
            before = (size - old) // 2
            pad = [0, 0] * (out.ndim - dim - 1) + [before, size - old - before]
            out = F.pad(out, pad)
        elif size == 1 and old > 1:
            out = out.mean(dim=dim, keepdim=True)
        elif size < old:
            out = out.narrow(dim, (old - size) // 2, size)
    return out.contiguous()


def resize_position_embedding(embedding: torch.Tensor, grid: Sequence[int], new_grid: Sequence[int]) -> torch.Tensor:
    """[1, prod(grid), C] -> [1, prod(new_grid), C]; tokens in Primus' order (the patch embedding's output
    flattened axis by axis), interpolated trilinearly (align_corners=False)."""
    channels = embedding.shape[-1]
    volume = embedding.reshape(1, *grid, channels).permute(0, 4, 1, 2, 3).float()
    resized = F.interpolate(volume, size=tuple(new_grid), mode="trilinear", align_corners=False)
    return resized.permute(0, 2, 3, 4, 1).reshape(1, -1, channels).to(embedding.dtype)
