"""SelfMedHPM: known answers for the ranking loss and metrics, the top-alpha selection, the schedules, the teacher's
un-masked forward, the EMA of student and predictor, and a save/load round trip through the real Stage1Runner."""
import math
import os

import pytest
import torch

from nnunet_anatomask.pretraining import losses, masking, schedules
from nnunet_anatomask.pretraining.grid import MaskGrid
from nnunet_anatomask.pretraining.schemes.selfmed_hpm import (CellLossPredictor, SelfMedHPMScheme, ranked_cells,
                                                             ranking_accuracy, relative_ranking_loss, spearman)
from nnunet_anatomask.trainers.registry import nnUNetTrainerSelfMedHPM
from tests.conftest import BIN, run_cli
from tests.pretraining.schemes.conftest import train_step
from tests.trainers.helpers import fold_folder, load_weights_only, make_trainer, stage1_log_text
from tests.trainers.cli_runs import train_and_predict
from tests.trainers.cli_runs import kill_after_epoch
from tests.trainers.test_stage1_loop import cpu_loop

# Two images, three ranked cells each. Image 0: l = [1, 2, 2], p = [0, 1, 0]; image 1: l = [3, 1, 1], p = [0, 2, 5].
# Valid pairs (l_i != l_j; the tie of cells 1 and 2 is excluded in both images), with y = 1[l_j > l_i] and
# BCE(sigmoid(p_j - p_i), y):  image 0 (0,1): -log s(1) = log(1 + e^-1);  (0,2): -log s(0) = log 2;
#                              image 1 (0,1): l_0 > l_1, -log(1 - s(2)) = log(1 + e^2);  (0,2): log(1 + e^5).
PREDICTED = torch.tensor([[0.0, 1.0, 0.0], [0.0, 2.0, 5.0]])
ACTUAL = torch.tensor([[1.0, 2.0, 2.0], [3.0, 1.0, 1.0]])
EXPECTED_LOSS = (math.log1p(math.exp(-1)) + math.log(2) + math.log1p(math.exp(2)) + math.log1p(math.exp(5))) / 4


def test_ranking_loss_hand_computed_ties_excluded():
    """Catches: ties counted (as either class), the pair direction flipped (sigmoid(p_i - p_j)), pairs across
    images, the mean taken over all M^2 pairs instead of the valid ones, and gradients into the target."""
    predicted, actual = PREDICTED.clone().requires_grad_(), ACTUAL.clone().requires_grad_()
    loss = relative_ranking_loss(predicted, actual)
    assert loss.item() == pytest.approx(EXPECTED_LOSS, rel=1e-6)
    loss.backward()
    assert predicted.grad is not None and actual.grad is None  # l is the detached reconstruction loss


def test_ranking_accuracy_hand_computed():
    """Image 0: (0,1) ordered right, (0,2) a tie in p (1/2); image 1: both pairs ordered wrong -> 1.5 / 4."""
    assert ranking_accuracy(PREDICTED, ACTUAL).item() == pytest.approx(0.375)
    assert ranking_accuracy(ACTUAL, ACTUAL).item() == 1.0 and ranking_accuracy(-ACTUAL, ACTUAL).item() == 0.0


def test_spearman_known_values():
    """Rows: same order (1), reversed (-1), one adjacent swap of 4 (1 - 6 * 2 / 60 = 0.8); the batch mean."""
    predicted = torch.tensor([[3.0, 1.0, 2.0, 0.0], [0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0]])
    actual = torch.tensor([[30.0, 10.0, 20.0, 0.0], [3.0, 2.0, 1.0, 0.0], [1.0, 0.0, 2.0, 3.0]])
    for row, rho in enumerate([1.0, -1.0, 0.8]):
        assert spearman(predicted[row:row + 1], actual[row:row + 1]).item() == pytest.approx(rho)
    assert spearman(predicted, actual).item() == pytest.approx(0.8 / 3)


def test_predictor_pools_every_decoder_stage_onto_the_cells_2d():
    """2D grid of 2 x 4 cells of 4 x 2 px: a full-resolution stage is averaged per cell, a stage coarser than the
    cells (1 x 2) is repeated over the cells it covers. Catches: a wrong cell order, stages dropped."""
    grid = MaskGrid((8, 8), (4, 2))
    assert grid.cells_per_axis == (2, 4)
    fine = torch.arange(64.0).view(1, 1, 8, 8)
    coarse = torch.tensor([[[[10.0, 20.0]]]])
    predictor = CellLossPredictor([1, 1], grid)
    features = predictor.cell_features([coarse, fine])
    expected_fine = fine.view(2, 4, 4, 2).mean(dim=(1, 3)).flatten()  # rows of 4 px, columns of 2 px
    torch.testing.assert_close(features[0, :, 1], expected_fine)
    torch.testing.assert_close(features[0, :, 0], torch.tensor([10.0, 10, 20, 20, 10, 10, 20, 20]))
    assert predictor([coarse, fine]).shape == (1, 8)


def test_ranked_cells_are_the_masked_cells_or_a_random_subset():
    torch.manual_seed(0)
    mask = masking.random_mask(torch.rand(3, 20), 12)
    ranked = ranked_cells(mask, 12, limit=100)
    assert torch.equal(ranked.sort(1).values, mask.nonzero()[:, 1].view(3, 12))
    subset = ranked_cells(mask, 12, limit=5)
    assert subset.shape == (3, 5) and mask.gather(1, subset).all()
    assert all(len(set(row)) == 5 for row in subset.tolist())


def test_schedules_at_given_epochs(model):
    """alpha = 0.5 (e + 1) / E; momentum as HPM's engine_pretrain (0.999 -> 0.9999 over 100 of 800 epochs)."""
    scheme = SelfMedHPMScheme(model, model.grid, total_epochs=800)
    assert scheme.alpha(0) == pytest.approx(0.5 / 800) and scheme.alpha(799) == 0.5
    assert scheme.alpha(399) == pytest.approx(0.25)
    assert scheme.ema.momentum(0) == pytest.approx(0.999)
    assert scheme.ema.momentum(50) == pytest.approx(0.999 + 50 / 100 * (0.9999 - 0.999))
    assert scheme.ema.momentum(100) == scheme.ema.momentum(700) == pytest.approx(0.9999)
    assert scheme.n_masked(0) == 48 and scheme.n_hard(799) == 24 and scheme.n_hard(0) == 0  # 64 cells


def test_top_alpha_predicted_hardest_plus_random(model, images, monkeypatch):
    """Epoch 1 of 5: alpha = 0.2, n_hard = int(0.2 * 48) = 9 (not 10); the 9 highest teacher predictions are
    masked, the other 39 masked cells are guided_mask's random ones. Catches: the easiest cells chosen, a rounded
    or otherwise wrong n_hard."""
    scheme = SelfMedHPMScheme(model, model.grid, total_epochs=5)
    torch.manual_seed(3)
    predicted = torch.randn(3, 64)
    monkeypatch.setattr(scheme, "teacher_predictions", lambda imgs: predicted)
    torch.manual_seed(4)
    mask = scheme.select_mask(images, 1).cells
    torch.manual_seed(4)
    expected = masking.guided_mask(predicted, scheme.random_key(images), 48, 9)
    assert scheme.n_hard(1) == 9 and torch.equal(mask, expected)
    assert mask.gather(1, predicted.topk(9, dim=1).indices).all()
    assert (mask.sum(1) == 48).all()


def test_no_hard_cells_means_random_mask_and_no_teacher(model, images, monkeypatch):
    scheme = SelfMedHPMScheme(model, model.grid, total_epochs=100)  # epoch 0: int(48 * 0.005) = 0

    def no_teacher(imgs):
        raise AssertionError("teacher forward while n_hard = 0")

    monkeypatch.setattr(scheme, "teacher_predictions", no_teacher)
    torch.manual_seed(7)
    mask = scheme.select_mask(images, 0).cells
    torch.manual_seed(7)
    assert torch.equal(mask, masking.random_mask(torch.rand(3, 64), 48))


def test_teacher_predictor_runs_on_the_unmasked_patch(model, images):
    """Catches: the teacher given the student's (or any) mask or masked images, no features asked for, and the
    student's predictor used instead of the teacher's (the EMA copy)."""
    scheme = SelfMedHPMScheme(model, model.grid, total_epochs=5)
    with torch.no_grad():  # student predictor != teacher predictor, as after training
        for p in scheme.predictor.parameters():
            p.add_(torch.randn_like(p))
    calls, teacher_forward = [], scheme.teacher.forward

    def spy_teacher(imgs, cell_mask, features=False):
        calls.append((imgs, cell_mask.clone(), features))
        return teacher_forward(imgs, cell_mask, features=True)

    scheme.teacher.forward = spy_teacher  # this instance only
    scores = scheme.teacher_predictions(images)
    del scheme.teacher.forward
    (seen_images, seen_mask, features), = calls
    assert seen_images is images and features
    assert seen_mask.shape == (3, *model.grid.cells_per_axis) and not seen_mask.any()
    decoder_features = scheme.teacher(images, seen_mask, features=True).decoder_features
    torch.testing.assert_close(scores, scheme.teacher_predictor(decoder_features))
    assert not torch.allclose(scores, scheme.predictor(decoder_features))


def test_step_total_loss_and_figures_from_masked_cells_only(model, images):
    """L = L_rec + L_pred, with L_pred and the figures over the masked cells' predicted / actual losses (the
    picture's maps), the actual losses on intensities (HPM's raw target). Catches: ranking over all cells, the
    predictor left out of the total, the ranking target in the normalised space."""
    scheme = SelfMedHPMScheme(model, model.grid, total_epochs=2)
    torch.manual_seed(5)
    out = scheme.step({"data": images}, model, epoch=1)  # alpha = 0.5: the teacher ranks
    mask = out.picture.cell_mask
    rec, _ = losses.reconstruction_loss(out.picture.prediction, images, mask, model.grid)
    errors = losses.cell_difficulty(out.picture.prediction, images, model.grid, "raw")
    ranked = mask.nonzero()[:, 1].view(3, 48)
    predicted = out.picture.maps["predicted loss (student)"].gather(1, ranked)
    actual = errors.gather(1, ranked)
    l_pred = relative_ranking_loss(predicted, actual)
    torch.testing.assert_close(out.loss.detach(), rec + l_pred)
    torch.testing.assert_close(out.figures["ranking_loss"], l_pred)
    torch.testing.assert_close(out.figures["rank_accuracy"], ranking_accuracy(predicted, actual))
    torch.testing.assert_close(out.figures["spearman"], spearman(predicted, actual))
    assert {"teacher_rank_accuracy", "teacher_spearman"} <= set(out.figures)
    out.loss.backward()
    assert all(p.grad is not None for p in scheme.predictor.parameters())


def test_ema_updates_teacher_and_its_predictor(model, images):
    scheme = SelfMedHPMScheme(model, model.grid, total_epochs=100)
    with torch.no_grad():
        for p in list(model.parameters()) + list(scheme.predictor.parameters()):
            p.add_(torch.randn_like(p))
    pairs = [(scheme.teacher, model), (scheme.teacher_predictor, scheme.predictor)]
    before = [[p.clone() for p in teacher.parameters()] for teacher, _ in pairs]
    train_step(scheme, model, images, epoch=3)
    m = schedules.ema_momentum(3, 100, 0.999, 0.9999, 1 / 8)
    for (teacher, student), old in zip(pairs, before):
        for t, b, s in zip(teacher.parameters(), old, student.parameters()):
            torch.testing.assert_close(t, m * b + (1 - m) * s.detach(), atol=1e-6, rtol=0)
        assert any(not torch.equal(t, b) for t, b in zip(teacher.parameters(), old))


def test_predictor_and_teacher_in_scheme_state_trained_by_runner(model, images):
    scheme = SelfMedHPMScheme(model, model.grid, total_epochs=2)
    prefixes = {k.split(".")[0] for k in scheme.state_dict()}
    assert prefixes == {"predictor", "teacher", "teacher_predictor"}
    assert not any(k.startswith(("predictor", "teacher")) for k in model.network.state_dict())
    assert [id(p) for p in scheme.trainable_parameters()] == [id(p) for p in scheme.predictor.parameters()]
    runner = cpu_loop(model, scheme)
    head = [p.detach().clone() for p in scheme.predictor.parameters()]
    runner.train_step({"data": images}, 1)
    assert all(not torch.equal(a, b) for a, b in zip(head, scheme.predictor.parameters()))


def test_checkpoint_round_trip_restores_predictor_and_teacher(demo3d, tmp_path, monkeypatch):
    """Save after a step, load into a fresh runner: the checkpoint reads back equal and the next step (teacher
    ranking, mask, both losses) is the same as the original runner's. Catches: predictor, teacher or teacher
    predictor missing from scheme_state, or not loaded."""
    monkeypatch.setenv("nnUNet_anatomask_pretrain_epochs", "2")  # epoch 1: alpha = 0.5, the teacher ranks

    def built_runner():
        trainer = make_trainer(demo3d, nnUNetTrainerSelfMedHPM, monkeypatch, tmp_path / "results")
        trainer.initialize()
        trainer.stage1.build()
        return trainer.stage1

    first = built_runner()
    patch = tuple(first.grid.patch_size)
    torch.manual_seed(0)
    batches = [torch.randn(first.trainer.batch_size, first.input_channels(), *patch) for _ in range(2)]
    first.loop.train_step({"data": batches[0]}, 1)
    path = str(tmp_path / "checkpoint_latest.pth")
    first.save(path)
    expected = first.loop.train_step({"data": batches[1]}, 1)

    second = built_runner()
    second.load(path)
    saved, restored = torch.load(path, weights_only=True)["scheme_state"]["scheme"], second.scheme.state_dict()
    assert saved.keys() == restored.keys() and all(torch.equal(saved[k], restored[k]) for k in saved)
    got = second.loop.train_step({"data": batches[1]}, 1)
    assert torch.equal(got.picture.cell_mask, expected.picture.cell_mask)
    for name in ("loss", "ranking_loss", "teacher_rank_accuracy"):
        torch.testing.assert_close(got.figures[name], expected.figures[name], rtol=1e-6, atol=1e-7)


# --- the real CLIs (slow: pytest -m slow -k selfmed) -------------------------------------------------------------
@pytest.mark.slow
def test_selfmed_hpm_train_and_predict_cli(demo3d, tmp_path):
    """nnUNetv2_train -tr nnUNetTrainerSelfMedHPM: stage 1 (one epoch: alpha = 0.5, so the teacher ranks), stage 2,
    nnUNetv2_predict; the predictor and both teachers are in scheme_state, the ranking figures in the log."""
    fold_dir = train_and_predict(demo3d, tmp_path, "nnUNetTrainerSelfMedHPM", "3d_fullres", "SelfMedHPM")
    ckpt = load_weights_only(os.path.join(fold_dir, "pretraining", "checkpoint_final.pth"))
    state = ckpt["scheme_state"]["scheme"]
    assert {k.split(".")[0] for k in state} == {"predictor", "teacher", "teacher_predictor"}
    assert {k for k in state if k.startswith("teacher.network.")} == \
        {"teacher.network." + k for k in ckpt["network_weights"]}
    log = ckpt["logging"]
    assert log["alpha"] == [0.5]
    for key in ("rank_accuracy", "spearman", "teacher_rank_accuracy", "teacher_spearman", "ranking_loss"):
        assert len(log[key]) == 1 and math.isfinite(log[key][0]), key


@pytest.mark.slow
def test_selfmed_hpm_pretrain_killed_then_continued_cli(demo3d, tmp_path):
    """nnUNetv2_pretrain killed after a saved epoch, then --c: stage 1 resumes at the saved epoch, with the saved
    log kept, and finishes with every schedule value of its epochs."""
    epochs = 4
    results = tmp_path / "results"
    env = demo3d.train_env(results, nnUNet_anatomask_pretrain_epochs=str(epochs))
    fold_dir = fold_folder(results, demo3d.dataset_name, "nnUNetTrainerSelfMedHPM", "3d_fullres", "all")
    latest = os.path.join(fold_dir, "pretraining", "checkpoint_latest.pth")
    cmd = ["nnUNetv2_pretrain", str(demo3d.dataset_id), "3d_fullres", "all", "-tr", "nnUNetTrainerSelfMedHPM",
           "-device", "cpu"]
    kill_after_epoch([os.path.join(BIN, cmd[0]), *cmd[1:]], env, latest, 1)
    saved = load_weights_only(latest)
    assert {k.split(".")[0] for k in saved["scheme_state"]["scheme"]} == {"predictor", "teacher", "teacher_predictor"}
    run_cli([*cmd, "--c"], env)
    assert f"at epoch {saved['current_epoch']}" in stage1_log_text(fold_dir)
    log = load_weights_only(os.path.join(fold_dir, "pretraining", "checkpoint_final.pth"))["logging"]
    assert log["alpha"] == pytest.approx([schedules.hard_fraction_hpm(e, epochs) for e in range(epochs)])
    assert log["teacher_momentum"] == pytest.approx([schedules.ema_momentum(e, epochs, 0.999, 0.9999, 1 / 8)
                                                     for e in range(epochs)])
    for key, values in saved["logging"].items():
        assert log[key][:len(values)] == pytest.approx(values, nan_ok=True), key


class FlatModel(torch.nn.Module):
    """The tiny model's features, but a flat reconstruction (every cell's mean: 0 in the normalised space)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images, cell_mask, features=False):
        out = self.model(images, cell_mask, features=True)
        out = out._replace(reconstruction=torch.zeros_like(out.reconstruction))
        return out if features else out.reconstruction


def test_ranking_target_is_raw_on_cells_of_equal_normalised_error(model):
    """The pin (docs/selfmedhpm.md): every cell of sample 1 is sample 0's cell x 10 + 3, so a flat reconstruction
    has the same normalised error on both and 100x the raw error on sample 1. The actual losses the predictor
    learns to rank must be the raw ones. Catches: the ranking target taken from the normalised loss."""
    scheme = SelfMedHPMScheme(model, model.grid, total_epochs=2)
    torch.manual_seed(0)
    base = torch.randn(1, 1, 16, 16, 16)
    images = torch.cat([base, 10 * base + 3])
    out = scheme.step({"data": images}, FlatModel(model), epoch=0)
    actual = out.picture.maps["actual loss (raw, masked cells)"]
    mask = out.picture.cell_mask
    normalised = losses.per_cell_error(torch.zeros_like(images), images, model.grid)
    torch.testing.assert_close(normalised[0], normalised[1])
    variance = losses.cell_statistics(images, model.grid)[1].square()[..., 0, 0]
    torch.testing.assert_close(actual, torch.where(mask, normalised * variance, 0.0))
    ratio = actual[1][mask[1]].sum() / (normalised[1] * variance[0])[mask[1]].sum()
    assert ratio == pytest.approx(100.0, rel=1e-3)
