"""docs/architecture.md's "add a scheme in one file" example, executed as written, through the real
Stage1Runner.train_step: a step override with two masked forwards and a head on decoder features."""
import os
import re

import pytest
import torch

import nnunet_anatomask.trainers as trainers
from nnunet_anatomask.pretraining.schemes import SCHEMES
from nnunet_anatomask.pretraining.schemes.base import MaskingScheme
from tests.trainers.test_stage1_step import bare_runner

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "architecture.md")


@pytest.fixture
def toy_scheme_class():
    text = open(DOC).read().split("## Adding a scheme in one file")[1]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace = {"__name__": "checkerboard_from_docs"}
    saved = dict(SCHEMES)
    exec(compile(code, "docs/architecture.md", "exec"), namespace)
    yield namespace["CheckerboardScheme"]
    SCHEMES.clear()
    SCHEMES.update(saved)


class CountingModel(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, images, cell_mask, features=False):
        self.calls.append(cell_mask.clone())
        return self.model(images, cell_mask, features=features)


def test_toy_scheme_from_docs_runs_through_the_runner(model, images, toy_scheme_class):
    cls = toy_scheme_class
    assert issubclass(cls, MaskingScheme) and SCHEMES["Checkerboard"] is cls  # it registered itself
    assert trainers._scheme_trainer(cls).__name__ == "nnUNetTrainerCheckerboard"
    scheme = cls(model, model.grid, total_epochs=2)
    runner = bare_runner(model, scheme)
    runner.forward = counting = CountingModel(model)
    head_before = scheme.head.weight.detach().clone()
    out = runner.train_step(images, 0)
    first, second = (m.view(images.shape[0], -1) for m in counting.calls)
    assert len(counting.calls) == 2 and torch.equal(second, ~first) and (first.sum(1) == 32).all()
    assert torch.equal(scheme.select_mask(images, 1), ~scheme.select_mask(images, 0))
    assert torch.isfinite(out.figures["loss"]) and set(out.picture.maps) == {"predicted error"}
    assert not torch.equal(scheme.head.weight, head_before)  # the head is trained by the runner's optimiser
    assert all(p.grad is not None for p in model.mask_tokens)
    assert set(scheme.state_dict()) == {"head.weight", "head.bias"}  # scheme_state, not network_weights
