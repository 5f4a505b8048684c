"""pretraining/losses.py with hand-computed answers: per-cell normalised targets, MSE on MASKED cells only."""
import pytest
import torch

from nnunet_anatomask.pretraining import losses
from nnunet_anatomask.pretraining.grid import MaskGrid

# 2D patch 4 x 4 in cells of 2 x 2: 4 cells, row-major; one sample, one channel
GRID = MaskGrid((4, 4), (2, 2))
IMAGE = torch.tensor([[[[0., 2., 5., 5.],
                        [4., 6., 5., 5.],
                        [1., 1., 10., 0.],
                        [1., 1., 0., 10.]]]])
# cell 0 = (0, 2, 4, 6): mean 3, unbiased var 20/3; cell 1 constant 5; cell 2 constant 1; cell 3 = (10, 0, 0, 10)
STD0, STD3 = (20 / 3 + 1e-6) ** 0.5, (100 / 3 + 1e-6) ** 0.5


def test_normalized_target_by_hand():
    target = losses.normalized_target(IMAGE, GRID)  # [1, 4, 1, 4]
    expected = torch.tensor([[-3, -1, 1, 3], [0, 0, 0, 0], [0, 0, 0, 0], [5, -5, -5, 5]]) \
        / torch.tensor([[STD0], [1e-3], [1e-3], [STD3]])
    torch.testing.assert_close(target[0, :, 0], expected.float(), rtol=1e-5, atol=1e-5)


def test_loss_counts_masked_cells_only():
    """Catches: the loss computed over visible cells (or all cells) instead of masked ones."""
    target = GRID.unpatchify(losses.normalized_target(IMAGE, GRID))
    prediction = target.clone()
    prediction[..., :2, 2:] += 3.0  # cell 1 off by 3 everywhere: per-cell error 9
    prediction[..., 2:, :2] += 1.0  # cell 2 off by 1: error 1
    errors = losses.per_cell_error(prediction, IMAGE, GRID)
    torch.testing.assert_close(errors, torch.tensor([[0., 9., 1., 0.]]))
    mask = torch.tensor([[False, True, False, True]])  # cells 1 and 3 masked
    loss, detached = losses.reconstruction_loss(prediction, IMAGE, mask, GRID)
    assert loss.item() == pytest.approx((9 + 0) / 2)
    assert not detached.requires_grad
    assert losses.reconstruction_loss(prediction, IMAGE, ~mask, GRID)[0].item() == pytest.approx((0 + 1) / 2)


def test_target_is_normalised_per_cell():
    """Catches: a target without the per-cell normalisation (raw intensities): the raw image is then no longer a
    perfect reconstruction, and the normalised one is."""
    mask = torch.ones(1, 4, dtype=torch.bool)
    normalised = GRID.unpatchify(losses.normalized_target(IMAGE, GRID))
    assert losses.reconstruction_loss(normalised, IMAGE, mask, GRID)[0].item() == pytest.approx(0.0, abs=1e-10)
    raw_loss = losses.reconstruction_loss(IMAGE, IMAGE, mask, GRID)[0].item()
    assert raw_loss > 1.0


def test_masked_mean_and_to_image_space():
    values = torch.tensor([[1., 2., 3., 4.], [10., 20., 30., 40.]])
    mask = torch.tensor([[True, False, True, False], [False, False, False, True]])
    assert losses.masked_mean(values, mask).item() == pytest.approx((1 + 3 + 40) / 3)
    assert losses.masked_mean(values, torch.zeros_like(mask)).item() == 0.0  # nothing masked: no division by 0
    normalised = GRID.unpatchify(losses.normalized_target(IMAGE, GRID))
    torch.testing.assert_close(losses.to_image_space(normalised, IMAGE, GRID), IMAGE, rtol=1e-5, atol=1e-5)


def test_difficulty_spaces_by_hand():
    """Every cell predicted as its normalised target + 1: normalised error 1 everywhere; raw error = the cell's
    variance (unbiased + 1e-6, the normalisation's): 20/3, 0, 0, 100/3. Catches: raw error without the variance
    factor, the biased variance, an unknown space accepted."""
    prediction = GRID.unpatchify(losses.normalized_target(IMAGE, GRID) + 1.0)
    torch.testing.assert_close(losses.cell_difficulty(prediction, IMAGE, GRID, "normalized"), torch.ones(1, 4))
    torch.testing.assert_close(losses.cell_difficulty(prediction, IMAGE, GRID, "raw"),
                               torch.tensor([[20 / 3, 0.0, 0.0, 100 / 3]]) + 1e-6)
    torch.testing.assert_close(losses.cell_difficulty(prediction, IMAGE, GRID, "normalized"),
                               losses.per_cell_error(prediction, IMAGE, GRID))
    with pytest.raises(ValueError, match="difficulty space"):
        losses.cell_difficulty(prediction, IMAGE, GRID, "absolute")


def test_raw_error_is_the_error_of_the_prediction_mapped_back_to_intensities():
    """raw = mean((to_image_space(p) - x)²) per cell, for any prediction p."""
    torch.manual_seed(0)
    prediction = torch.randn_like(IMAGE)
    mapped = losses.to_image_space(prediction, IMAGE, GRID)
    expected = GRID.patchify(mapped - IMAGE).square().mean(dim=(-1, -2))
    torch.testing.assert_close(losses.cell_difficulty(prediction, IMAGE, GRID, "raw"), expected)


def test_equal_normalised_error_different_raw_error():
    """The pin of the two spaces (docs/architecture.md): cell 3 is cell 0 x 10 + 3 (same pattern, 100x the variance),
    so a flat prediction (each cell's mean) has the same normalised error on both, and 100x the raw error on cell
    3. Catches: one space computed as the other."""
    image = IMAGE.clone()
    image[..., 2:, 2:] = 10 * image[..., :2, :2] + 3
    flat = torch.zeros_like(image)
    normalised = losses.cell_difficulty(flat, image, GRID, "normalized")
    raw = losses.cell_difficulty(flat, image, GRID, "raw")
    assert normalised[0, 3] == pytest.approx(normalised[0, 0].item(), rel=1e-5)
    assert raw[0, 3] / raw[0, 0] == pytest.approx(100.0, rel=1e-4)
