"""Views cut from a loaded crop larger than the patch, batched on the device (docs/architecture.md, "Crops larger
than the patch"; GL-MAE's global and local views, docs/glmae.md).

A crop is ``[B, C, *crop]`` from nnU-Net's own loader at the plans' spacing. Two kinds of view, both of the
plans' patch size ``[B, C, *patch]``:
- the whole crop resized to the patch (its spacing is the plans' x crop / patch per axis);
- a patch-sized box of the crop at the plans' spacing, at a random position inside the crop.
Every function is one batched tensor call: no loop over the batch, no ``.item()``.
"""
from typing import Sequence

import torch
import torch.nn.functional as F

from nnunet_anatomask.pretraining.grid import MaskGrid

_LINEAR_MODES = {2: "bilinear", 3: "trilinear"}


def resize(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``[B, C, *crop]`` -> ``[B, C, *size]`` by (bi/tri)linear interpolation over the same extent.

    ``align_corners=False``: output voxel j samples input coordinate (j + 0.5) * crop / size - 0.5 (voxel centres
    to voxel centres), so a linear ramp stays the same ramp on the coarser grid.
    """
    ndim = images.ndim - 2
    if ndim not in _LINEAR_MODES:
        raise ValueError(f"resize takes 2D or 3D images [B, C, *spatial], got shape {tuple(images.shape)}")
    return F.interpolate(images, size=tuple(int(s) for s in size), mode=_LINEAR_MODES[ndim], align_corners=False)


def random_box_starts(batch: int, crop: Sequence[int], size: Sequence[int],
                      device: torch.device) -> torch.Tensor:
    """Long ``[batch, ndim]``: a box of ``size`` at a uniformly random integer position inside ``crop``
    (start 0 ... crop - size inclusive, per axis)."""
    if any(s > c for s, c in zip(size, crop)):
        raise ValueError(f"a box of {tuple(size)} voxels does not fit into a crop of {tuple(crop)}: the loader's "
                         "crops must be at least the patch on every axis (crop_scale >= 1)")
    room = torch.tensor([c - s + 1 for c, s in zip(crop, size)], device=device)
    return (torch.rand(batch, len(crop), device=device) * room).long().minimum(room - 1)


def cut_boxes(images: torch.Tensor, starts: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``images[b, :, starts[b, 0]:starts[b, 0] + size[0], ...]`` for every b: ``[B, C, *size]``, one gather."""
    batch, ndim = images.shape[0], images.ndim - 2
    index = [torch.arange(batch, device=images.device).view(batch, *[1] * ndim)]
    for axis, n in enumerate(size):
        shape = [batch] + [1] * ndim
        shape[1 + axis] = int(n)
        index.append((starts[:, axis, None] + torch.arange(int(n), device=images.device)).view(shape))
    return images.movedim(1, -1)[tuple(index)].movedim(-1, 1).contiguous()  # [B, *size, C] -> [B, C, *size]


def box_coverage(starts: torch.Tensor, size: Sequence[int], crop: Sequence[int], grid: MaskGrid) -> torch.Tensor:
    """Float ``[B, N]``: the fraction of each cell of the resized crop (``grid`` tiles the patch) that the box
    ``[starts, starts + size)`` of the crop covers, e.g. a picture of where a local view lies in the global view."""
    coverage = None
    for axis, (n_cells, cell) in enumerate(zip(grid.cells_per_axis, grid.cell_size)):
        scale = grid.patch_size[axis] / crop[axis]  # crop voxels -> resized voxels
        low = starts[:, axis, None].float() * scale  # [B, 1]
        high = low + size[axis] * scale
        edges = torch.arange(n_cells, device=starts.device, dtype=torch.float32) * cell  # [n_cells]
        overlap = (torch.minimum(high, edges + cell) - torch.maximum(low, edges)).clamp_min(0) / cell
        coverage = overlap if coverage is None else (coverage[..., None] * overlap[:, None, :]).flatten(1)
    return coverage
