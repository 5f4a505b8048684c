"""The mask grid: geometry only. Which voxels a masking decision covers, at every feature resolution.

A patch is tiled by cells of ``cell_size`` voxels; a cell mask is a ``torch.bool`` tensor ``[B, *cells_per_axis]``
with True = masked (MAE / SparK ``active`` is its negation); cells are enumerated in row-major (C) order of
``cells_per_axis``. Which cell size a network family uses is the backbone's decision (backbones/: the CNN's
encoder stride, docs/architecture.md "The mask grid"; Primus' patch embedding). SparK (Tian et al., ICLR 2023,
keyu-tian/SparK ``pretrain/spark.py``) expands the cell mask to finer feature maps with ``repeat_interleave``;
feature maps coarser than the cells are covered by ``visible_at`` too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from nnunet_anatomask.errors import PluginError

class MaskGridError(PluginError, ValueError):
    """The patch size and the plans' strides cannot carry a mask grid (the message names the fix)."""


@dataclass(frozen=True)
class MaskGrid:
    """Mask cells of ``cell_size`` voxels tiling a patch of ``patch_size`` voxels."""

    patch_size: tuple[int, ...]
    cell_size: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        object.__setattr__(self, "cell_size", tuple(int(c) for c in self.cell_size))
        self._check_layout()
        self._check_cells()

    # ---------------------------------------------------------------- geometry
    @property
    def ndim(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return len(self.patch_size)

    @property
    def cells_per_axis(self) -> tuple[int, ...]:
        """Number of cells along each axis."""
        self._check_cells()
        return tuple(p // c for p, c in zip(self.patch_size, self.cell_size))

    @property
    def num_cells(self) -> int:
        """Total number of cells in a patch."""
        return math.prod(self.cells_per_axis)

    # ---------------------------------------------------------------- cell <-> voxel maps
    def to_voxels(self, cell_mask: torch.Tensor) -> torch.Tensor:
        """``[B, *cells]`` bool -> ``[B, 1, *patch]`` bool, True = masked (SparK: ``repeat_interleave``)."""
        self._check_cell_mask(cell_mask)
        return _repeat_axes(cell_mask.unsqueeze(1), self.cell_size)

    def cell_values_to_voxels(self, values: torch.Tensor) -> torch.Tensor:
        """Per-cell values ``[B, num_cells]`` (e.g. an error map) -> ``[B, 1, *patch]``, constant in each cell."""
        return _repeat_axes(values.reshape(values.shape[0], 1, *self.cells_per_axis), self.cell_size)

    def visible_at(self, cell_mask: torch.Tensor, spatial_shape: Sequence[int],
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Float {0, 1} visibility ``[B, 1, *spatial_shape]`` of a feature map of that spatial shape.

        Axes where the map is finer than the cell grid: nearest upsampling (SparK's ``repeat_interleave``).
        Axes where it is coarser (e.g. CNN stages deeper than the cells): see ``_any_visible``. Shapes are static
        Python ints, no ``.item()``, no loop over the batch: traceable by ``torch.compile``.
        """
        self._check_cell_mask(cell_mask)
        pool, repeat = self._resampling(tuple(int(s) for s in spatial_shape))
        visible = (~cell_mask).unsqueeze(1).to(dtype)
        return _repeat_axes(_any_visible(visible, pool), repeat)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, *patch]`` -> ``[B, num_cells, C, prod(cell_size)]`` (MAE ``patchify``; cells row-major)."""
        self._check_image(x)
        batch, channels = x.shape[:2]
        d = self.ndim
        interleaved = [v for pair in zip(self.cells_per_axis, self.cell_size) for v in pair]
        x = x.reshape(batch, channels, *interleaved)  # [B, C, n0, c0, n1, c1, ...]
        order = (0, *[2 + 2 * a for a in range(d)], 1, *[3 + 2 * a for a in range(d)])
        return x.permute(order).reshape(batch, self.num_cells, channels, math.prod(self.cell_size))

    def unpatchify(self, p: torch.Tensor) -> torch.Tensor:
        """Inverse of ``patchify``: ``[B, num_cells, C, prod(cell_size)]`` -> ``[B, C, *patch]``."""
        if p.ndim != 4 or p.shape[1] != self.num_cells or p.shape[3] != math.prod(self.cell_size):
            raise MaskGridError(f"unpatchify expects [B, {self.num_cells}, C, {math.prod(self.cell_size)}] "
                                f"patches, got shape {tuple(p.shape)}: pass the output of patchify")
        batch, _, channels, _ = p.shape
        d = self.ndim
        p = p.reshape(batch, *self.cells_per_axis, channels, *self.cell_size)  # [B, n0.., C, c0..]
        order = (0, d + 1, *[v for a in range(d) for v in (1 + a, d + 2 + a)])  # -> [B, C, n0, c0, n1, c1, ...]
        return p.permute(order).reshape(batch, channels, *self.patch_size)

    # ---------------------------------------------------------------- checks
    def _check_layout(self) -> None:
        if self.ndim not in (2, 3):
            raise MaskGridError(f"the mask grid supports 2D and 3D patches, got patch size {self.patch_size}: "
                                "use a 2d or 3d nnU-Net configuration")
        if len(self.cell_size) != self.ndim or any(c < 1 for c in self.cell_size):
            raise MaskGridError(f"the cell size must have {self.ndim} positive entries like the patch size "
                                f"{self.patch_size}, got {self.cell_size}: derive it from the network's strides")

    def _check_cells(self) -> None:
        for axis, (p, c) in enumerate(zip(self.patch_size, self.cell_size)):
            if p % c:
                raise MaskGridError(f"patch size {self.patch_size} is not divisible by the mask cell size "
                                    f"{self.cell_size} on axis {axis}: use a patch size that is a multiple of "
                                    "the network's total stride (nnU-Net's planner always makes it one)")
            if p // c < 2:  # Ours (docs/architecture.md): one cell per axis leaves nothing to predict from
                raise MaskGridError(f"patch size {self.patch_size} gives only {p // c} mask cells of "
                                    f"{self.cell_size} voxels on axis {axis}; the mask grid needs at least 2 "
                                    "cells per axis: use a larger patch size in the plans or a configuration "
                                    "with a larger patch")

    def _check_cell_mask(self, cell_mask: torch.Tensor) -> None:
        if cell_mask.dtype != torch.bool or tuple(cell_mask.shape[1:]) != self.cells_per_axis:
            raise MaskGridError(f"a cell mask must be a bool tensor [B, {', '.join(map(str, self.cells_per_axis))}]"
                                f" (True = masked), got {cell_mask.dtype} {tuple(cell_mask.shape)}: build it "
                                "on this grid's cells_per_axis")

    def _check_image(self, x: torch.Tensor) -> None:
        if x.ndim != self.ndim + 2 or tuple(x.shape[2:]) != self.patch_size:
            raise MaskGridError(f"expected images [B, C, {', '.join(map(str, self.patch_size))}], got shape "
                                f"{tuple(x.shape)}: feed patches of the grid's patch size")

    def _resampling(self, spatial_shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Per-axis (pool, repeat) factors that map the cell grid onto ``spatial_shape``."""
        cells = self.cells_per_axis
        if len(spatial_shape) != self.ndim:
            raise MaskGridError(f"spatial shape {spatial_shape} has {len(spatial_shape)} axes, the grid has "
                                f"{self.ndim}: pass x.shape[2:] of a feature map")
        pool, repeat = [], []
        for axis, (n, c) in enumerate(zip(spatial_shape, cells)):
            if (n >= c and n % c) or (n < c and c % n):
                raise MaskGridError(f"a feature map of spatial shape {spatial_shape} does not tile the "
                                    f"{cells} mask cells on axis {axis}: the patch size must be a multiple of "
                                    "the network's total stride")
            pool.append(c // n if n < c else 1)
            repeat.append(n // c if n >= c else 1)
        return tuple(pool), tuple(repeat)


def _repeat_axes(x: torch.Tensor, repeats: Sequence[int]) -> torch.Tensor:
    """Nearest upsampling of the spatial axes of ``[B, C, *spatial]`` by integer factors."""
    for axis, r in enumerate(repeats):
        if r > 1:
            x = x.repeat_interleave(r, dim=2 + axis)
    return x


def _any_visible(visible: torch.Tensor, pool: Sequence[int]) -> torch.Tensor:
    """Max-pool ``[B, 1, *cells]`` visibility over blocks of ``pool`` cells (non-overlapping)."""
    # Ours: a voxel of a feature map coarser than the cells covers several cells; it is visible if ANY of
    # them is visible, the semantics of a strided sparse convolution (an output site is active when any
    # input site under it is active). SparK never meets this case (its mask lives at the deepest stage).
    if all(f == 1 for f in pool):
        return visible
    batch, channels = visible.shape[:2]
    blocks = [v for n, f in zip(visible.shape[2:], pool) for v in (n // f, f)]
    visible = visible.reshape(batch, channels, *blocks)
    return visible.amax(dim=tuple(3 + 2 * a for a in range(len(pool))))
