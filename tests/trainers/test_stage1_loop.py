"""Stage1Loop.train_step (the runner's optimiser step): the scheme-owned step changed nothing for the existing
schemes, clipping covers every parameter the optimiser trains, the scheme never sees the labels, and a checkpoint
with other optimiser parameter groups is refused."""
import dataclasses

import pytest
import torch
from torch import nn

from nnunet_anatomask.pretraining.schemes import SCHEMES
from nnunet_anatomask.pretraining.schemes.settings import scheme_config
from nnunet_anatomask.trainers.stage1_loop import OptimizerStateMismatchError, Stage1Loop
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


def cpu_loop(model: nn.Module, scheme) -> Stage1Loop:
    """The runner's step around a model and a scheme at the scheme's own recipe, on the CPU (no grad scaler, not
    compiled)."""
    return Stage1Loop(model, scheme, torch.device("cpu"), scheme.config.recipe(scheme.name))


@pytest.mark.parametrize("name", list(REFERENCE))
def test_losses_equal_the_last_commits(name, one_thread):
    torch.manual_seed(0)
    model = tiny_model()
    config = scheme_config(SCHEMES["AnatoMask"], {"difficulty_space": "normalized"}) \
        if name == "AnatoMaskNormalized" else None  # the teacher map before the raw space
    scheme_class = SCHEMES["AnatoMask" if name == "AnatoMaskNormalized" else name]
    loop = cpu_loop(model, scheme_class(model, model.grid, total_epochs=5, config=config))
    torch.manual_seed(1)
    losses = [loop.train_step({"data": torch.randn(2, 1, 16, 16, 16)}, epoch).figures["loss"].item()
              for epoch in range(5)]
    assert losses == pytest.approx(REFERENCE[name], rel=1e-6, abs=1e-6)


def test_clipping_covers_every_param_group():
    """Catches: clipping only param_groups[0] (a scheme head in a second group would escape the clip)."""
    torch.manual_seed(0)
    model = tiny_model()
    scheme = SCHEMES["RandomMask"](model, model.grid, total_epochs=5)
    head = nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([{"params": list(model.parameters())}, {"params": [head]}], lr=0.0)
    loop = cpu_loop(model, scheme)
    loop.optimizer, loop.recipe = optimizer, dataclasses.replace(loop.recipe, grad_clip=1e-3)
    loop.optimise(scheme.step({"data": torch.randn(2, 1, 16, 16, 16)}, model, 0).loss + 1e3 * head.sum())
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    assert torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])) == pytest.approx(1e-3, rel=1e-4)


def test_the_scheme_gets_the_batch_without_its_labels():
    """The loader's batch reaches the scheme whole (data on the device, keys) but without 'target': stage 1 never
    sees labels. Catches: the labels handed on, or only the data."""
    torch.manual_seed(0)
    model = tiny_model()
    scheme = SCHEMES["RandomMask"](model, model.grid, total_epochs=2)
    seen = []
    step = scheme.step
    scheme.step = lambda batch, *args: seen.append(batch) or step(batch, *args)  # a spy on this instance only
    batch = {"data": torch.randn(2, 1, 16, 16, 16), "target": torch.ones(2, 1, 16, 16, 16), "keys": ["a", "b"]}
    cpu_loop(model, scheme).train_step(batch, 0)
    assert set(seen[0]) == {"data", "keys"} and seen[0]["keys"] == ["a", "b"]
    assert torch.equal(seen[0]["data"], batch["data"])


def test_a_checkpoint_with_other_parameter_groups_is_refused_with_the_fix():
    """SelfMedHPM's optimiser has two groups (no weight decay on biases and norms); a checkpoint written with one
    group cannot resume it, and says so before any step. Catches: torch's bare ValueError, or a silent load."""
    torch.manual_seed(0)
    model = tiny_model()
    loop = cpu_loop(model, SCHEMES["SelfMedHPM"](model, model.grid, total_epochs=5))
    old = torch.optim.AdamW(list(model.parameters())).state_dict()
    with pytest.raises(OptimizerStateMismatchError, match="start stage 1 anew"):
        loop.load_state(old, None, "fold_0/pretraining/checkpoint_latest.pth")
    loop.load_state(loop.optimizer.state_dict(), None, "same groups")  # the same groups load
