"""Stage1Runner.train_step: the scheme-owned step changed nothing for the existing schemes, and clipping covers
every parameter the optimiser trains."""
import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from nnunet_anatomask.pretraining.schemes import SCHEMES
from nnunet_anatomask.trainers.stage1 import Stage1Runner
from tests.pretraining.schemes.conftest import tiny_model

# Losses of 5 steps (epochs 0..4 of 5, so AnatoMask's teacher runs from epoch 1), produced by the same loop on
# commit 715b38c, before the scheme interface owned the step (its train_step returned (mask, prediction, figures));
# AnatoMask's teacher then scored cells in the normalised space. "AnatoMask" (raw-space teacher map, docs/
# anatomask.md) was recorded on the branch that made the space a setting, where the normalised space still
# reproduces the old numbers.
REFERENCE = {
    "RandomMask": [1.5047075748443604, 1.4397944211959839, 1.4773471355438232, 1.5206965208053589, 1.4617327451705933],
    "AnatoMaskNormalized": [1.5047075748443604, 1.4799909591674805, 1.4583154916763306, 1.4958566427230835,
                            1.5211669206619263],
    "AnatoMask": [1.5047075748443604, 1.497981309890747, 1.5145666599273682, 1.5001119375228882, 1.5315457582473755],
}


class AnatoMaskNormalized(SCHEMES["AnatoMask"]):  # no `name`: not registered; the teacher map before raw space
    difficulty_space = "normalized"


def bare_runner(model: nn.Module, scheme, optimizer: torch.optim.Optimizer = None) -> Stage1Runner:
    """A Stage1Runner around a given model and scheme, without a trainer (CPU, no grad scaler, not compiled)."""
    runner = Stage1Runner.__new__(Stage1Runner)
    runner.trainer = SimpleNamespace(device=torch.device("cpu"))
    runner.grid, runner.scheme, runner.model, runner.forward, runner.grad_scaler = \
        model.grid, scheme, model, model, None
    params = list(model.parameters()) + scheme.trainable_parameters()
    runner.recipe = scheme.recipe()
    runner.optimizer = optimizer or runner.recipe.optimizer(params)
    return runner


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one summation order, as when the reference was recorded
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", list(REFERENCE))
def test_losses_equal_the_last_commits(name, one_thread):
    torch.manual_seed(0)
    model = tiny_model()
    scheme_class = AnatoMaskNormalized if name == "AnatoMaskNormalized" else SCHEMES[name]
    runner = bare_runner(model, scheme_class(model, model.grid, total_epochs=5))
    torch.manual_seed(1)
    losses = [runner.train_step(torch.randn(2, 1, 16, 16, 16), epoch).figures["loss"].item() for epoch in range(5)]
    assert losses == pytest.approx(REFERENCE[name], rel=1e-6, abs=1e-6)


def test_clipping_covers_every_param_group():
    """Catches: clipping only param_groups[0] (a scheme head in a second group would escape the clip)."""
    torch.manual_seed(0)
    model = tiny_model()
    scheme = SCHEMES["RandomMask"](model, model.grid, total_epochs=5)
    head = nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([{"params": list(model.parameters())}, {"params": [head]}], lr=0.0)
    runner = bare_runner(model, scheme, optimizer)
    runner.recipe = dataclasses.replace(runner.recipe, grad_clip=1e-3)
    runner.optimise(scheme.step(torch.randn(2, 1, 16, 16, 16), model, 0).loss + 1e3 * head.sum())
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    assert torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])) == pytest.approx(1e-3, rel=1e-4)


def test_a_checkpoint_with_other_parameter_groups_is_refused_with_the_fix():
    """SelfMedHPM's optimiser now has two groups (no weight decay on biases and norms); a checkpoint written with
    one group cannot resume it, and says so before any step. Catches: torch's bare ValueError, or a silent load."""
    from nnunet_anatomask.trainers.stage1 import OptimizerStateMismatchError, load_optimizer_state
    torch.manual_seed(0)
    model = tiny_model()
    params = list(model.parameters())
    old = torch.optim.AdamW(params).state_dict()
    new = SCHEMES["SelfMedHPM"].recipe().optimizer(params)
    with pytest.raises(OptimizerStateMismatchError, match="start stage 1 anew"):
        load_optimizer_state(new, old, "fold_0/pretraining/checkpoint_latest.pth")
    load_optimizer_state(new, new.state_dict(), "same groups")  # the same groups load
