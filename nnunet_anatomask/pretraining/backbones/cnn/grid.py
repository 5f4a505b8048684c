"""The CNN's mask cell: the cumulative stride of one encoder stage (docs/architecture.md, "The mask grid").

SparK (Tian et al., ICLR 2023) masks on the feature grid of the encoder's deepest stage (a cell = the total
downsampling ratio, 32 px for a ResNet). nnU-Net encoders pool further than that (a cell of 32³ or 64³ voxels would
leave two or four cells per axis), so the cell is the cumulative stride of the deepest stage k whose largest stride
is still <= MAX_CELL voxels; stages deeper than k see a coarser grid than the mask (``MaskGrid.visible_at``).
"""
from __future__ import annotations

from typing import Sequence

from nnunet_anatomask.pretraining.grid import MaskGrid, MaskGridError

# Ours: the largest cell edge (in voxels) a mask cell may have; SparK's 2D cell is 32 px, we use the
# deepest nnU-Net stage whose cumulative stride is still <= 16 so that 3D patches keep enough cells.
MAX_CELL = 16


def cumulative_strides(strides: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """Per-stage strides (nnU-Net plans' ``strides`` / ``pool_op_kernel_sizes``) -> cumulative per stage."""
    if len(strides) == 0:
        raise MaskGridError("the plans give no encoder strides; the mask grid needs the per-stage strides of "
                            "the network (arch kwargs 'strides')")
    cumulative, current = [], None
    for stage_stride in strides:
        stage_stride = tuple(int(s) for s in stage_stride)
        current = stage_stride if current is None else tuple(c * s for c, s in zip(current, stage_stride))
        cumulative.append(current)
    return tuple(cumulative)


def mask_stage(strides: Sequence[Sequence[int]], max_cell: int = MAX_CELL) -> int:
    """k = the deepest encoder stage whose largest cumulative stride is <= max_cell."""
    stage_strides = cumulative_strides(strides)
    eligible = [s for s, stride in enumerate(stage_strides) if max(stride) <= max_cell]
    if not eligible:
        raise MaskGridError(f"the first encoder stage already has stride {stage_strides[0]}, larger than "
                            f"the largest mask cell ({max_cell} voxels): use plans whose first stride is 1")
    return eligible[-1]  # cumulative strides never shrink, so the eligible stages are a prefix


def cnn_grid(patch_size: Sequence[int], strides: Sequence[Sequence[int]], max_cell: int = MAX_CELL) -> MaskGrid:
    """The mask grid of a CNN with these per-stage strides: cells of stage k's cumulative stride."""
    return MaskGrid(tuple(patch_size), cumulative_strides(strides)[mask_stage(strides, max_cell)])


def stage_at_cells(strides: Sequence[Sequence[int]], grid: MaskGrid) -> int:
    """The deepest encoder stage whose feature map has the grid's cell resolution (the stage ``cnn_grid`` chose)."""
    stages = [s for s, stride in enumerate(cumulative_strides(strides)) if stride == grid.cell_size]
    if not stages:
        raise MaskGridError(f"no encoder stage has the mask cell size {grid.cell_size} as its stride: build the "
                            "grid with cnn_grid from the network's own strides")
    return stages[-1]
