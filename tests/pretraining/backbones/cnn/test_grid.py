"""The CNN's cell size rule: the deepest encoder stage whose cumulative stride is <= 16 voxels on every axis."""
import pytest

from nnunet_anatomask.pretraining.backbones.cnn.grid import cnn_grid, cumulative_strides, mask_stage, stage_at_cells
from nnunet_anatomask.pretraining.grid import MaskGridError

ISO_3D = [[1, 1, 1]] + [[2, 2, 2]] * 5  # nnU-Net 3d_fullres, 6 stages
ANISO_3D = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
ANISO_3D_LATE = [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
PLAIN_2D = [[1, 1]] + [[2, 2]] * 6


def test_cumulative_strides():
    assert cumulative_strides(ANISO_3D) == ((1, 1, 1), (1, 2, 2), (2, 4, 4), (4, 8, 8), (8, 16, 16), (8, 32, 32))


def test_isotropic_3d_cell_is_16():
    grid = cnn_grid((128, 128, 128), ISO_3D)
    assert mask_stage(ISO_3D) == stage_at_cells(ISO_3D, grid) == 4  # cumulative strides 1, 2, 4, 8, 16, 32
    assert grid.cell_size == (16, 16, 16)
    assert grid.cells_per_axis == (8, 8, 8)
    assert grid.num_cells == 512


def test_anisotropic_3d_cell():
    # cumulative: (1,1,1) (1,2,2) (2,4,4) (4,8,8) (8,16,16) (8,32,32): deepest with max <= 16 is stage 4
    grid = cnn_grid((40, 160, 160), ANISO_3D)
    assert stage_at_cells(ANISO_3D, grid) == 4
    assert grid.cell_size == (8, 16, 16)
    assert grid.cells_per_axis == (5, 10, 10)
    # cumulative: (1,1,1) (1,2,2) (1,4,4) (2,8,8) (4,16,16) (8,32,32): the 4 x 16 x 16 example of the docs
    grid = cnn_grid((16, 160, 160), ANISO_3D_LATE)
    assert stage_at_cells(ANISO_3D_LATE, grid) == 4
    assert grid.cell_size == (4, 16, 16)
    assert grid.cells_per_axis == (4, 10, 10)


def test_2d_cell_is_16():
    grid = cnn_grid((512, 384), PLAIN_2D)
    assert stage_at_cells(PLAIN_2D, grid) == 4
    assert grid.cell_size == (16, 16)
    assert grid.cells_per_axis == (32, 24)


@pytest.mark.parametrize("max_cell, stage, cell", [(8, 3, (8, 8, 8)), (15, 3, (8, 8, 8)), (16, 4, (16, 16, 16)),
                                                   (32, 5, (32, 32, 32)), (1000, 5, (32, 32, 32))])
def test_max_cell_picks_deepest_stage_within_limit(max_cell, stage, cell):
    grid = cnn_grid((128, 128, 128), ISO_3D, max_cell=max_cell)
    assert mask_stage(ISO_3D, max_cell) == stage_at_cells(ISO_3D, grid) == stage
    assert grid.cell_size == cell


def test_max_cell_uses_the_largest_axis():
    # stage 5 has (8, 32, 32): its largest stride 32 > 16 although axis 0 is only 8
    assert mask_stage(ANISO_3D, 16) == stage_at_cells(ANISO_3D, cnn_grid((16, 64, 64), ANISO_3D)) == 4


def test_a_stride_one_stage_after_the_cells_is_the_stage_at_cell_resolution():
    """Two stages with the same cumulative stride: the deeper one is the mask stage, in both rules."""
    strides = [[1, 1], [2, 2], [2, 2], [1, 1], [2, 2]]  # cumulative 1, 2, 4, 4, 8
    grid = cnn_grid((32, 32), strides, max_cell=4)
    assert grid.cell_size == (4, 4) and mask_stage(strides, 4) == stage_at_cells(strides, grid) == 3


def test_first_stride_too_large_and_too_few_cells_name_the_fix():
    with pytest.raises(MaskGridError, match="use plans whose first stride is 1"):
        cnn_grid((64, 64), [[32, 32], [2, 2]])
    with pytest.raises(MaskGridError, match="at least 2 cells per axis"):
        cnn_grid((16, 64, 64), ISO_3D)
