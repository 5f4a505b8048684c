"""Tests of the mask grid (geometry only): cell <-> voxel maps, visibility at every resolution, errors. The CNN's
cell size rule: tests/pretraining/backbones/cnn/test_grid.py."""
import pytest
import torch

from nnunet_anatomask.pretraining.grid import MaskGrid, MaskGridError


# ------------------------------------------------------------------ errors
def test_too_few_cells_names_axis_and_fix():
    with pytest.raises(MaskGridError) as err:
        MaskGrid((16, 64, 64), (16, 16, 16))
    message = str(err.value)
    assert "gives only 1 mask cells of (16, 16, 16) voxels on axis 0" in message
    assert "at least 2 cells per axis" in message
    assert "use a larger patch size in the plans or a configuration with a larger patch" in message


def test_too_few_cells_on_last_axis():
    with pytest.raises(MaskGridError, match="on axis 1;"):
        MaskGrid((64, 16), (16, 16))


def test_patch_not_divisible_by_cell():
    with pytest.raises(MaskGridError, match=r"not divisible by the mask cell size \(16, 16, 16\) on axis 0"):
        MaskGrid((40, 64, 64), (16, 16, 16))


def test_bad_cell_mask_is_refused():
    grid = MaskGrid((32, 48), (16, 16))
    with pytest.raises(MaskGridError, match="bool tensor"):
        grid.to_voxels(torch.zeros(1, 3, 2, dtype=torch.bool))
    with pytest.raises(MaskGridError, match="bool tensor"):
        grid.to_voxels(torch.zeros(1, 2, 3))


# ------------------------------------------------------------------ cell <-> voxel maps
def _hand_grid_2d() -> MaskGrid:
    grid = MaskGrid((32, 48), (16, 16))
    assert grid.cell_size == (16, 16) and grid.cells_per_axis == (2, 3)
    return grid


def test_to_voxels_against_hand_built_example():
    grid = _hand_grid_2d()
    cell_mask = torch.tensor([[[True, False, False], [False, False, True]]])
    expected = torch.zeros(1, 1, 32, 48, dtype=torch.bool)
    expected[0, 0, :16, :16] = True
    expected[0, 0, 16:, 32:] = True
    assert torch.equal(grid.to_voxels(cell_mask), expected)


def test_patchify_order_matches_flattened_cell_mask():
    grid = _hand_grid_2d()
    x = torch.arange(2 * 3 * 32 * 48, dtype=torch.float32).reshape(2, 3, 32, 48)
    patches = grid.patchify(x)
    assert patches.shape == (2, 6, 3, 256)
    for i in range(2):
        for j in range(3):
            cell = i * 3 + j  # row-major, as cell_mask.reshape(B, -1)
            block = x[:, :, 16 * i:16 * (i + 1), 16 * j:16 * (j + 1)].reshape(2, 3, 256)
            assert torch.equal(patches[:, cell], block)
    # the flattened cell mask selects the patches of the masked voxels
    cell_mask = torch.tensor([[[True, False, False], [False, False, True]]] * 2)
    masked_voxels = grid.patchify(grid.to_voxels(cell_mask).float())
    assert torch.equal(masked_voxels.amax(dim=(2, 3)) > 0, cell_mask.reshape(2, -1))


def test_patchify_3d_order_and_round_trip():
    grid = MaskGrid((16, 64, 32), (8, 16, 16))  # cell (8, 16, 16), cells (2, 4, 2)
    x = torch.randn(2, 2, 16, 64, 32)
    patches = grid.patchify(x)
    assert patches.shape == (2, 16, 2, 8 * 16 * 16)
    a, b, c = 1, 2, 1
    cell = (a * 4 + b) * 2 + c
    block = x[:, :, 8 * a:8 * (a + 1), 16 * b:16 * (b + 1), 16 * c:16 * (c + 1)].reshape(2, 2, -1)
    assert torch.equal(patches[:, cell], block)
    assert torch.equal(grid.unpatchify(patches), x)


def test_unpatchify_inverts_patchify_2d():
    grid = _hand_grid_2d()
    x = torch.randn(3, 1, 32, 48)
    assert torch.equal(grid.unpatchify(grid.patchify(x)), x)
    p = torch.randn(3, 6, 1, 256)
    assert torch.equal(grid.patchify(grid.unpatchify(p)), p)


# ------------------------------------------------------------------ per-stage visibility
def test_visible_at_patch_resolution_is_negated_to_voxels():
    grid = _hand_grid_2d()
    cell_mask = torch.rand(4, 2, 3) < 0.5
    visible = grid.visible_at(cell_mask, (32, 48))
    assert visible.dtype == torch.float32
    assert torch.equal(visible, (~grid.to_voxels(cell_mask)).float())


def test_visible_at_finer_stage_repeats():
    grid = _hand_grid_2d()
    cell_mask = torch.tensor([[[True, False, False], [False, False, True]]])
    visible = grid.visible_at(cell_mask, (4, 6))  # stride 8: 2 x 2 voxels per cell
    expected = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1],
                             [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0]], dtype=torch.float32)
    assert torch.equal(visible, expected[None, None])


def test_visible_at_coarser_stage_is_any_visible():
    grid = MaskGrid((64, 64), (16, 16))  # cell 16, 4 x 4 cells; stage 5 is 2 x 2
    cell_mask = torch.ones(2, 4, 4, dtype=torch.bool)
    cell_mask[0, 1, 2] = False  # one visible cell in the top-right 2 x 2 block
    cell_mask[1, 3, 3] = False  # bottom-right block
    cell_mask[1, 0, 0] = False  # top-left block
    visible = grid.visible_at(cell_mask, (2, 2))
    expected = torch.tensor([[[[0., 1.], [0., 0.]]], [[[1., 0.], [0., 1.]]]])
    assert torch.equal(visible, expected)
    # the deepest map of all: one voxel, visible when any cell is
    assert torch.equal(grid.visible_at(cell_mask, (1, 1)), torch.ones(2, 1, 1, 1))


def test_visible_at_mixed_axes():
    # cell (8, 16, 16), cells (2, 4, 2); a map of (4, 2, 1): axis 0 finer x2, axes 1 and 2 coarser /2
    grid = MaskGrid((16, 64, 32), (8, 16, 16))
    cell_mask = torch.ones(1, 2, 4, 2, dtype=torch.bool)
    cell_mask[0, 1, 3, 0] = False
    visible = grid.visible_at(cell_mask, (4, 2, 1))
    expected = torch.zeros(1, 1, 4, 2, 1)
    expected[0, 0, 2:, 1, 0] = 1
    assert torch.equal(visible, expected)


def test_visible_at_refuses_shapes_that_do_not_tile():
    grid = MaskGrid((64, 64), (16, 16))
    with pytest.raises(MaskGridError, match="does not tile"):
        grid.visible_at(torch.zeros(1, 4, 4, dtype=torch.bool), (6, 4))


def test_cell_values_to_voxels_matches_to_voxels():
    grid = MaskGrid((8, 8), (4, 4))
    values = torch.arange(8.0).reshape(2, 4)
    voxels = grid.cell_values_to_voxels(values)
    assert voxels.shape == (2, 1, 8, 8)
    assert torch.equal(grid.patchify(voxels)[..., 0, 0], values)
    mask = values > 2.5
    assert torch.equal(grid.to_voxels(mask.view(2, 2, 2)), grid.cell_values_to_voxels(mask.float()) > 0)
