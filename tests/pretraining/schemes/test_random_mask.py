import torch

from nnunet_anatomask.pretraining.schemes.random_mask import RandomMaskScheme
from tests.pretraining.schemes.conftest import train_step


def test_ratio_exact_for_every_sample_and_loss_finite(model, images):
    scheme = RandomMaskScheme(model, model.grid, total_epochs=3)
    assert model.grid.num_cells == 64  # 16³ patch, 4³ cells
    mask = train_step(scheme, model, images, 0)
    assert mask.shape == (3, 64) and (mask.sum(1) == round(0.6 * 64)).all()
    assert len(scheme.state_dict()) == 0  # no state of its own


def test_masks_differ_between_samples_and_steps(model, images):
    scheme = RandomMaskScheme(model, model.grid, total_epochs=3)
    first, second = scheme.select_mask(images, 0).cells, scheme.select_mask(images, 0).cells
    assert not torch.equal(first[0], first[1]) and not torch.equal(first, second)
