import pytest
import torch

from nnunet_anatomask.pretraining import losses, masking, schedules
from nnunet_anatomask.pretraining.schemes.anatomask import AnatoMaskConfig, AnatoMaskScheme
from nnunet_anatomask.pretraining.schemes.random_mask import RandomMaskScheme
from tests.pretraining.schemes.conftest import train_step


def test_planted_error_map_top_alpha_plus_random(model, images, monkeypatch):
    """alpha = 0.5 at the last epoch: the int(0.5 * 38) = 19 planted hardest cells are masked, plus 19 others."""
    scheme = AnatoMaskScheme(model, model.grid, total_epochs=5)
    planted = torch.stack([torch.randperm(64)[:19] for _ in range(3)])
    scores = torch.zeros(3, 64).scatter_(1, planted, torch.rand(3, 19) + 1.0)
    monkeypatch.setattr(scheme, "teacher_scores", lambda imgs: scores)
    mask = scheme.select_mask(images, 4).cells
    assert (mask.sum(1) == 38).all()
    assert mask.gather(1, planted).all()
    assert scheme.alpha(4) == 0.5


def test_alpha_zero_start_is_exactly_random_baseline(model, images):
    anato = AnatoMaskScheme(model, model.grid, total_epochs=10)
    rand = RandomMaskScheme(model, model.grid, total_epochs=10)
    torch.manual_seed(7)
    expected = rand.select_mask(images, 0).cells
    torch.manual_seed(7)
    mask = anato.select_mask(images, 0)
    assert torch.equal(mask.cells, expected)
    assert mask.maps == {} and mask.hard is None  # teacher skipped while alpha * n_masked < 1


def test_teacher_scores_only_cells_it_masked(model, images):
    scheme = AnatoMaskScheme(model, model.grid, total_epochs=5)
    scores = scheme.teacher_scores(images)
    assert ((scores > 0).sum(1) == masking.num_masked(64, 0.6)).all()


def test_complementary_error_map_scores_every_cell(model, images):
    scheme = AnatoMaskScheme(model, model.grid, total_epochs=5, config=AnatoMaskConfig(error_map="complementary"))
    assert (scheme.teacher_scores(images) > 0).all()


def test_schedules_at_given_epochs(model):
    scheme = AnatoMaskScheme(model, model.grid, total_epochs=100)
    assert scheme.alpha(0) == 0.0 and scheme.alpha(99) == 0.5
    assert scheme.alpha(33) == pytest.approx(0.5 * 33 / 99)
    assert scheme.ema.momentum(0) == pytest.approx(0.999)
    assert scheme.ema.momentum(12) == pytest.approx(0.999 + 0.0009 * 12 / 25)
    assert scheme.ema.momentum(60) == pytest.approx(0.9999)
    assert AnatoMaskScheme(model, model.grid, total_epochs=1).alpha(0) == 0.0


def test_step_updates_teacher_by_ema_formula(model, images):
    scheme = AnatoMaskScheme(model, model.grid, total_epochs=100)
    with torch.no_grad():  # student and teacher differ, as after some training
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in scheme.teacher.parameters()]
    train_step(scheme, model, images, epoch=3)  # on_step_end runs with epoch 3's momentum
    m = schedules.ema_momentum(3, 100)
    for t, b, s in zip(scheme.teacher.parameters(), before, model.parameters()):
        assert torch.allclose(t, m * b + (1 - m) * s.detach(), atol=1e-6)
    assert any(not torch.allclose(t, b) for t, b in zip(scheme.teacher.parameters(), before))


def test_teacher_is_in_scheme_state_not_network(model):
    scheme = AnatoMaskScheme(model, model.grid, total_epochs=5)
    state = scheme.state_dict()
    assert {k[len("teacher.network."):] for k in state if k.startswith("teacher.network.")} == \
        set(model.network.state_dict())
    assert not any(k.startswith("teacher") for k in model.network.state_dict())


def test_teacher_sees_its_own_random_mask_and_is_scored_on_intensities(model, images):
    """Catches: a teacher that reconstructs from the un-masked image (no or an empty mask), and scores in the
    per-cell normalised space instead of on intensities (the official code's raw patches). The spy teacher predicts
    the normalised target exactly, plus a known offset in every cell: each cell it masked must score offset² x the
    cell's variance (the offset mapped back to intensities), each cell it saw 0."""
    scheme = AnatoMaskScheme(model, model.grid, total_epochs=5)
    grid, seen = model.grid, []
    offset = torch.arange(grid.num_cells, dtype=torch.float32).repeat(images.shape[0], 1) / grid.num_cells

    def spy_teacher(imgs, cell_mask, features=False):
        seen.append(cell_mask.clone())
        target = losses.normalized_target(imgs, grid)  # [B, N, C, voxels]
        return grid.unpatchify(target + offset[..., None, None])

    scheme.teacher.forward = spy_teacher  # this instance only
    scores = scheme.teacher_scores(images)
    assert len(seen) == 1 and seen[0].shape == (images.shape[0], *grid.cells_per_axis)
    teacher_mask = seen[0].view(images.shape[0], -1)
    assert (teacher_mask.sum(1) == masking.num_masked(grid.num_cells, scheme.config.teacher_ratio)).all()
    variance = losses.cell_statistics(images, grid)[1].square()[..., 0, 0]
    torch.testing.assert_close(scores, torch.where(teacher_mask, offset ** 2 * variance, 0.0))


def test_hard_cells_are_the_bright_ones_among_cells_of_equal_normalised_error(model):
    """The pin (docs/anatomask.md): 48 of the 64 cells are noise x 10 (+3), 16 plain noise; the teacher predicts
    every cell's normalised target + 0.5, so every cell's normalised error is exactly 0.25 and the raw error is
    0.25 x the cell's variance, 100x larger on the bright ones. With alpha = 0.5 (the last epoch) the 19 hard cells
    must all be bright (the teacher masks 38 cells, about 28 of them bright). Catches: the teacher map scored in
    the normalised space (the hard cells are then drawn by the random tie-break)."""
    scheme = AnatoMaskScheme(model, model.grid, total_epochs=2)
    grid = model.grid
    torch.manual_seed(0)
    cells = grid.patchify(torch.randn(2, 1, 16, 16, 16))
    bright = torch.zeros(2, grid.num_cells, dtype=torch.bool)
    bright[:, 16:] = True
    images = grid.unpatchify(torch.where(bright[..., None, None], 10 * cells + 3, cells))
    off_by_half = grid.unpatchify(losses.normalized_target(images, grid) + 0.5)
    scheme.teacher.forward = lambda imgs, mask, features=False: off_by_half  # this instance only
    normalised = losses.per_cell_error(off_by_half, images, grid)
    torch.testing.assert_close(normalised, torch.full_like(normalised, 0.25))
    hard = scheme.select_mask(images, epoch=1).hard
    assert hard.sum() == 2 * int(0.5 * masking.num_masked(grid.num_cells, scheme.config.mask_ratio))
    assert (hard & ~bright).sum() == 0
