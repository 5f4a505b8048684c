"""The adapting rules on small tensors with known answers (nnunet_anatomask/transfer/adapt.py)."""
import pytest
import torch
import torch.nn.functional as F

from nnunet_anatomask.transfer.adapt import resize_kernel, resize_position_embedding, spread_channels


def test_one_channel_spread_is_nnunet_mains_repeat_over_n():
    w = torch.arange(6.0).reshape(2, 1, 3)
    out = spread_channels(w, 3)
    assert out.shape == (2, 3, 3)
    assert torch.equal(out, w.repeat(1, 3, 1) / 3)


def test_spread_keeps_the_response_to_an_image_whose_channels_are_equal():
    """M = 2 -> N = 3: W'[:, n] = (W[:, 0] + W[:, 1]) / 3; an image with equal channels gives the same output."""
    torch.manual_seed(0)
    w, image = torch.randn(4, 2, 3, 3), torch.randn(1, 1, 8, 8)
    out = spread_channels(w, 3)
    assert torch.allclose(out[:, 0], (w[:, 0] + w[:, 1]) / 3)
    assert torch.allclose(F.conv2d(image.expand(1, 3, 8, 8), out), F.conv2d(image.expand(1, 2, 8, 8), w), atol=1e-5)


def test_a_larger_kernel_is_the_same_function():
    """3x3x3 -> 5x5x5: the pretrained kernel at the centre, zeros around it; with 'same' padding the output is
    unchanged on any input."""
    torch.manual_seed(0)
    w, image = torch.randn(2, 1, 3, 3, 3), torch.randn(1, 1, 6, 6, 6)
    out = resize_kernel(w, (5, 5, 5))
    assert out.shape == (2, 1, 5, 5, 5) and torch.equal(out[:, :, 1:4, 1:4, 1:4], w)
    assert torch.allclose(out.abs().sum(), w.abs().sum())  # nothing but zeros added
    assert torch.allclose(F.conv3d(image, out, padding=2), F.conv3d(image, w, padding=1), atol=1e-5)


def test_to_size_one_averages_and_to_a_smaller_size_crops_the_centre():
    w = torch.arange(2 * 5 * 3, dtype=torch.float).reshape(1, 2, 5, 3)
    averaged = resize_kernel(w, (5, 1))
    assert averaged.shape == (1, 2, 5, 1) and torch.equal(averaged[..., 0], w.mean(-1))
    cropped = resize_kernel(w, (3, 3))
    assert torch.equal(cropped, w[:, :, 1:4, :])
    anisotropic = resize_kernel(torch.ones(1, 1, 3, 3, 3), (1, 3, 3))  # nnU-Net's [1, 3, 3] first stages
    assert anisotropic.shape == (1, 1, 1, 3, 3) and torch.equal(anisotropic, torch.ones(1, 1, 1, 3, 3))


def test_position_embedding_interpolation():
    """Same grid: unchanged; a constant embedding stays constant; a ramp along the first axis stays a ramp in the
    token order Primus uses (the patch embedding's output flattened axis by axis)."""
    torch.manual_seed(0)
    pe = torch.randn(1, 2 * 3 * 4, 5)
    assert torch.allclose(resize_position_embedding(pe, (2, 3, 4), (2, 3, 4)), pe, atol=1e-6)
    assert torch.allclose(resize_position_embedding(torch.ones(1, 8, 3), (2, 2, 2), (4, 3, 2)), torch.ones(1, 24, 3))
    ramp = torch.arange(4.0).reshape(4, 1, 1).expand(4, 2, 2).reshape(1, 16, 1)
    out = resize_position_embedding(ramp, (4, 2, 2), (4, 2, 2)).reshape(4, 2, 2)
    assert torch.allclose(out[:, 0, 0], torch.arange(4.0))
    wider = resize_position_embedding(ramp, (4, 2, 2), (8, 2, 2)).reshape(8, 2, 2)[:, 1, 1]
    assert torch.all(wider[1:] >= wider[:-1]) and wider[0] == pytest.approx(0) and wider[-1] == pytest.approx(3)
