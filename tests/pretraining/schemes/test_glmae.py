"""GL-MAE: view geometry, the consistency losses, the teacher's input and EMA, the step through the real runner
(docs/glmae.md). Known answers on small tensors; each docstring names the mutation the test catches."""
import math

import pytest
import torch

from nnunet_anatomask.pretraining import masking, schedules, views
from nnunet_anatomask.pretraining.backbones.cnn.grid import cnn_grid
from nnunet_anatomask.pretraining.backbones.cnn.model import MaskedReconstructionModel
from nnunet_anatomask.pretraining.schemes.glmae import (BOX_MAP, GLMAEConfig, GLMAEScheme, consistency,
                                                        global_guided_consistency)
from nnunet_anatomask.trainers.stage1_data import crop_size
from tests.pretraining.schemes.conftest import STRIDES, tiny_model, train_step
from tests.trainers.test_stage1_loop import cpu_loop

CROP = crop_size((16, 16, 16), GLMAEConfig().crop_scale)  # 27³ for the 16³ patch of the tiny model


def crops(batch: int, size=CROP, seed: int = 2) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(batch, 1, *size)


def tiny_model_2d() -> MaskedReconstructionModel:
    """A 3-stage 2D PlainConvUNet (4-8-16 features) on 16² patches: 4 x 4 cells of 4² pixels."""
    return tiny_model(ndim=2)


# ==================================================================== view geometry
@pytest.mark.parametrize("crop, patch", [((10, 15, 20), (6, 9, 12)), ((20, 15), (12, 9))])
def test_resize_keeps_a_linear_ramp(crop, patch):
    """A linear ramp f(i) = sum_a (a + 1) * i_a resized to the patch: output voxel j holds f at the input coordinate
    (j + 0.5) * crop / patch - 0.5 (voxel centres over the same extent). Catches: align_corners=True, nearest
    interpolation, a crop of the centre instead of a resize."""
    coords = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in crop], indexing="ij")
    ramp = sum((a + 1) * c for a, c in enumerate(coords))[None, None]
    expected_coords = torch.meshgrid(*[(torch.arange(p) + 0.5) * c / p - 0.5 for c, p in zip(crop, patch)],
                                     indexing="ij")
    expected = sum((a + 1) * c for a, c in enumerate(expected_coords))
    torch.testing.assert_close(views.resize(ramp, patch)[0, 0], expected, atol=1e-4, rtol=0)


def test_local_boxes_lie_inside_the_crop_reach_every_position_and_are_exact_crops():
    """Catches: an off-by-one range of starts (never the last position, or one past the crop), a box cut from
    another sample or with its axes swapped."""
    crop, size = (7, 8, 9), (5, 8, 4)
    images = torch.arange(40 * 2 * math.prod(crop), dtype=torch.float32).view(40, 2, *crop)
    torch.manual_seed(0)
    starts = torch.cat([views.random_box_starts(40, crop, size, torch.device("cpu")) for _ in range(10)])
    assert starts.dtype == torch.long and starts.shape == (400, 3)
    for axis, (c, s) in enumerate(zip(crop, size)):
        assert set(starts[:, axis].tolist()) == set(range(c - s + 1))  # inside the crop, every position drawn
    starts = starts[:40]
    boxes = views.cut_boxes(images, starts, size)
    assert boxes.shape == (40, 2, *size)
    for b in range(40):
        z, y, x = starts[b].tolist()
        assert torch.equal(boxes[b], images[b, :, z:z + 5, y:y + 8, x:x + 4])


def test_a_box_larger_than_the_crop_is_refused():
    with pytest.raises(ValueError, match="does not fit into a crop"):
        views.random_box_starts(2, (16, 16), (16, 20), torch.device("cpu"))


def test_box_coverage_on_the_resized_grid():
    """Patch 12³ in cells of 4³ (3 per axis), crop 20³ (scale 0.6): a box of 12 crop voxels starting at 0, 8 and 4
    covers [0, 7.2), [4.8, 12) and [2.4, 9.6) of the resized view, i.e. cell fractions (1, .8, 0), (0, .8, 1) and
    (.4, 1, .4) per axis, their product per cell. Catches: no crop -> patch scaling, axes in the wrong order."""
    grid = cnn_grid((12, 12, 12), STRIDES)
    coverage = views.box_coverage(torch.tensor([[0, 8, 4]]), (12, 12, 12), (20, 20, 20), grid)
    per_axis = [torch.tensor([1.0, 0.8, 0.0]), torch.tensor([0.0, 0.8, 1.0]), torch.tensor([0.4, 1.0, 0.4])]
    expected = per_axis[0][:, None, None] * per_axis[1][None, :, None] * per_axis[2][None, None, :]
    torch.testing.assert_close(coverage, expected.reshape(1, 27))


# ==================================================================== the consistency losses
def test_consistency_known_values_and_no_gradient_into_the_teacher():
    """2 - 2 cos: 0 for equal or scaled embeddings, 2 for orthogonal, 4 for opposite ones; the gradient reaches the
    student only. Catches: a missing detach of the teacher, an un-normalised MSE, 1 - cos."""
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]], requires_grad=True)
    student = torch.tensor([[1.0, 0.0, 0.0], [0.0, 6.0, 0.0], [1.0, 0.0, 0.0], [-3.0, -3.0, 0.0]],
                           requires_grad=True)
    values = consistency(student, teacher)
    torch.testing.assert_close(values, torch.tensor([0.0, 0.0, 2.0, 4.0]))
    values.sum().backward()
    assert teacher.grad is None and student.grad is not None and student.grad[2].abs().sum() > 0


def test_g2g_pairs_each_global_and_g2l_each_local_with_its_own_case():
    """Three global views (teacher e0, e1, e2) and two local views cut from cases 0 and 1: the masked globals point
    like their teacher (G2G = 0); local 0 is orthogonal to teacher 0 (2), local 1 opposite teacher 1 (4): G2L = 3.
    Catches: locals paired with the wrong case's teacher (e.g. the last L) or with the student's own globals."""
    teacher = torch.eye(3, 4)
    student = torch.cat([teacher * torch.tensor([[2.0], [1.0], [5.0]]), torch.stack([teacher[1], -teacher[1]])])
    g2g, g2l = global_guided_consistency(student, teacher)
    assert g2g.item() == pytest.approx(0.0, abs=1e-6) and g2l.item() == pytest.approx(3.0)


def test_g2g_against_the_previous_steps_anchor(model):
    """The diagnostic compares this step's student global embedding with the previous step's teacher anchor (the
    first step: its own). Catches: comparing with this step's anchor (it would equal g2g), a stale first anchor."""
    scheme = GLMAEScheme(model, model.grid, total_epochs=5)
    e = torch.eye(3, 4)
    assert scheme.g2g_against_previous_anchor(e[:1], e[:1]).item() == pytest.approx(0.0, abs=1e-6)
    assert scheme.g2g_against_previous_anchor(e[1:2], e[1:2]).item() == pytest.approx(2.0)  # e1 against e0
    assert scheme.g2g_against_previous_anchor(-e[1:2], e[2:3]).item() == pytest.approx(4.0)  # -e1 against e1


# ==================================================================== the scheme
@pytest.mark.parametrize("batch, n_global", [(2, 1), (3, 2), (4, 2)])
def test_views_share_the_plans_batch(model, batch, n_global):
    """B crops -> ceil(B / 2) global views (crops resized to the patch) then local views, each a patch-sized box
    of the crop of the global view it follows. Catches: doubling the batch, locals cut from other cases."""
    scheme = GLMAEScheme(model, model.grid, total_epochs=5)
    images = crops(batch)
    all_views, starts = scheme.make_views(images)
    assert all_views.shape == (batch, 1, 16, 16, 16) and starts.shape == (batch - n_global, 3)
    torch.testing.assert_close(all_views[:n_global], views.resize(images[:n_global], (16, 16, 16)))
    torch.testing.assert_close(all_views[n_global:], views.cut_boxes(images[:batch - n_global], starts, (16,) * 3))
    with pytest.raises(ValueError, match="batch of at least 2"):
        scheme.make_views(images[:1])


def test_student_sees_every_view_masked_once_teacher_the_unmasked_global_views(model):
    """One student forward over all B views, each masked at the ratio; one teacher encoder-only forward over the G
    global views with nothing masked (no teacher decoder runs). Catches: a teacher that sees a masked or a local
    view, a second student forward, a teacher that runs its decoder to throw it away."""
    scheme = GLMAEScheme(model, model.grid, total_epochs=5)
    student_calls, teacher_calls = [], []

    def spy(calls, forward):
        def call(images, grid_mask, **kwargs):
            calls.append((images.clone(), grid_mask.clone()))
            return forward(images, grid_mask, **kwargs)
        return call

    decoder_calls = []
    scheme.teacher.encode = spy(teacher_calls, scheme.teacher.encode)  # this instance only
    encoder = {id(m) for m in scheme.teacher.network.encoder.modules()}  # nnU-Net's UNetDecoder holds it too
    for module in scheme.teacher.network.decoder.modules():  # its parts: the model runs them, not its forward
        if id(module) not in encoder:
            module.register_forward_hook(lambda *_: decoder_calls.append(1))
    scheme.step({"data": crops(4)}, spy(student_calls, model), epoch=0)
    assert len(student_calls) == 1 and len(teacher_calls) == 1 and decoder_calls == []
    student_views, student_mask = student_calls[0]
    assert student_views.shape[0] == 4
    assert (student_mask.view(4, -1).sum(1) == masking.num_masked(64, scheme.config.mask_ratio)).all()
    teacher_views, teacher_mask = teacher_calls[0]
    assert torch.equal(teacher_views, student_views[:2]) and not teacher_mask.any()


def test_anchors_are_the_teachers_projection_of_the_unmasked_global_views(model):
    """G2G and G2L are recomputed from scratch: the student's embeddings Q(P(layout)) of its masked views (the
    spied forward's own features), the anchors P_m(layout(teacher(global view, nothing masked))). Teacher and
    teacher projector are first moved away from the student's copies (as after training), so every part shows.
    Catches: a step that anchors on the student's own detached global embedding (G2G would be 0), the student's
    projector used where the teacher's belongs, a teacher that sees the masked view or a local view."""
    scheme = GLMAEScheme(model, model.grid, total_epochs=5)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in [*scheme.teacher.parameters(), *scheme.teacher_projector.parameters()]:
            p.add_(0.5 * torch.randn_like(p))
    calls = []

    def spy(images, grid_mask, features=False):
        out = model(images, grid_mask, features=features)
        calls.append((images, grid_mask, out))
        return out

    out = scheme.step({"data": crops(4)}, spy, epoch=0)
    (all_views, grid_mask, student_out), = calls
    cell_mask = grid_mask.view(4, -1)
    with torch.no_grad():
        student = scheme.predictor(scheme.projector(scheme.layout(student_out.encoding.stages[-1], cell_mask)))
        nothing = torch.zeros(2, 64, dtype=torch.bool)
        teacher_skip = scheme.teacher.encode(all_views[:2], scheme.grid_mask(nothing)).stages[-1]
        anchor = scheme.teacher_projector(scheme.layout(teacher_skip, nothing))
        wrong_head = scheme.projector(scheme.layout(teacher_skip, nothing))
    expected_g2g = consistency(student[:2], anchor).mean()
    expected_g2l = consistency(student[2:], anchor).mean()
    torch.testing.assert_close(out.figures["g2g"], expected_g2g)
    torch.testing.assert_close(out.figures["g2l"], expected_g2l)
    assert out.figures["g2g"] > 0.01  # not the student's own embedding
    assert (consistency(student[:2], wrong_head).mean() - expected_g2g).abs() > 1e-3  # the heads differ here


def test_layout_readout_known_values(model):
    """A 4³ bottleneck (the tiny model's, one position per cell) holding its axis-0 coordinate (0..3) in channel 0
    and 7 in channel 1. Nothing masked: the two halves along axis 0 average 0.5 and 2.5, the map 1.5, so the
    layout is -1 / +1; channel 1 is constant, its layout 0. With the slab i0 = 0 masked: the visible halves average
    1 and 2.5, the visible map 2, so -1 / +0.5; values at masked positions never count. Catches: a plain mean
    (input-independent after instance norm), masked positions pooled, the whole-map mean not subtracted."""
    scheme = GLMAEScheme(model, model.grid, total_epochs=5)
    coordinate = torch.arange(4.0).view(4, 1, 1).expand(4, 4, 4)
    bottleneck = torch.stack([coordinate, torch.full((4, 4, 4), 7.0)])[None].repeat(2, 1, 1, 1, 1)
    cell_mask = torch.zeros(2, 4, 4, 4, dtype=torch.bool)
    cell_mask[1, 0] = True
    bottleneck[1, :, 0] = 100.0  # what the masked slab holds must not matter
    layout = scheme.layout(bottleneck, cell_mask.view(2, -1)).view(2, 2, 2, 2, 2)  # [V, C, bins0, bins1, bins2]
    first_half = torch.tensor([-1.0, -1.0])
    second_half = torch.tensor([1.0, 0.5])
    torch.testing.assert_close(layout[:, 0, 0], first_half.view(2, 1, 1).expand(2, 2, 2))
    torch.testing.assert_close(layout[:, 0, 1], second_half.view(2, 1, 1).expand(2, 2, 2))
    assert (layout[:, 1] == 0).all()


def test_gradient_reaches_student_and_heads_never_the_teacher(model):
    """Catches: a teacher projector that is a plain, trainable copy of the projector (it would join the optimiser,
    and take gradient if the teacher ran with it), heads that get no gradient or are left out of the optimiser."""
    scheme = GLMAEScheme(model, model.grid, total_epochs=5)
    scheme.step({"data": crops(2)}, model, epoch=0).loss.backward()
    heads = list(scheme.projector.parameters()) + list(scheme.predictor.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in heads)
    assert all(p.grad is not None for p in model.network.encoder.parameters())
    assert all(p.grad is None for p in [*scheme.teacher.parameters(), *scheme.teacher_projector.parameters()])
    assert {id(p) for p in scheme.trainable_parameters()} == {id(p) for p in heads}


def test_step_updates_teacher_and_its_projector_by_the_ema_formula(model):
    """Catches: a teacher projector left out of the EMA, the wrong momentum (BYOL's 0.996 -> 1 over the run)."""
    scheme = GLMAEScheme(model, model.grid, total_epochs=10)
    with torch.no_grad():  # student and teacher differ, as after some training
        for p in [*model.parameters(), *scheme.projector.parameters()]:
            p.add_(torch.randn_like(p))
    pairs = [(scheme.teacher, model), (scheme.teacher_projector, scheme.projector)]
    before = [[p.clone() for p in teacher.parameters()] for teacher, _ in pairs]
    train_step(scheme, model, crops(2), epoch=5)  # on_step_end runs with epoch 5's momentum
    m = 0.996 + 0.004 * 5 / 10
    assert scheme.ema.momentum(5) == pytest.approx(m) == schedules.ema_momentum(5, 10, 0.996, 1.0, 1.0)
    for (teacher, student), old in zip(pairs, before):
        for t, b, s in zip(teacher.parameters(), old, student.parameters()):
            torch.testing.assert_close(t, m * b + (1 - m) * s.detach())


def test_runner_step_logs_and_pictures_the_global_view(model):
    """The real Stage1Runner.train_step on crops of 5/3 x the patch: finite loss; the logged figures; a patch-sized
    picture of the global view whose box map covers (0.6 x 16)³ voxels; heads and teacher in scheme_state only."""
    scheme = GLMAEScheme(model, model.grid, total_epochs=5)
    out = cpu_loop(model, scheme).train_step({"data": crops(2)}, epoch=0)
    assert torch.isfinite(out.loss) and {"rec_global", "rec_local", "g2g", "g2l", "g2g_vs_previous"} <= set(out.figures)
    assert all(v.ndim == 0 and not v.requires_grad for v in out.figures.values())
    picture = out.picture
    assert picture.images.shape == picture.prediction.shape == (1, 1, 16, 16, 16)
    assert picture.cell_mask.shape == (1, 64) and set(picture.maps) == {BOX_MAP}
    boxes = picture.maps[BOX_MAP]
    assert boxes.shape == (1, 64) and boxes.min() >= 0 and boxes.max() <= 1
    assert (boxes.sum() * 4 ** 3).item() == pytest.approx((16 * 16 / 27) ** 3, rel=1e-5)
    state = scheme.state_dict()
    for prefix in ("teacher.network.", "teacher_projector.", "projector.", "predictor."):
        assert any(k.startswith(prefix) for k in state)
    assert not any(k.startswith(("teacher", "projector", "predictor")) for k in model.network.state_dict())


def test_2d_step_with_an_odd_batch():
    """2D plans, batch 3: two global views, one local view (from the first crop); the second global view has no
    local box in the picture."""
    torch.manual_seed(0)
    model = tiny_model_2d()
    scheme = GLMAEScheme(model, model.grid, total_epochs=5)
    out = cpu_loop(model, scheme).train_step({"data": crops(3, crop_size((16, 16), scheme.config.crop_scale))}, epoch=0)
    assert torch.isfinite(out.loss) and out.picture.images.shape == (2, 1, 16, 16)
    boxes = out.picture.maps[BOX_MAP]
    assert boxes.shape == (2, 16) and boxes[0].sum() > 0 and boxes[1].sum() == 0
