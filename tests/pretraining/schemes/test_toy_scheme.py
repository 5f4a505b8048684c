"""docs/architecture.md's "add a scheme in one file" example, executed as written, through a stage-1 step."""
import os
import re

import torch

from nnunet_anatomask.pretraining.schemes.base import MaskingScheme
from tests.pretraining.schemes.conftest import train_step

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "architecture.md")


def toy_scheme_class() -> type:
    text = open(DOC).read().split("## Adding a scheme in one file")[1]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile(code, "docs/architecture.md", "exec"), namespace)
    return namespace["CheckerboardScheme"]


def test_toy_scheme_from_docs_runs_a_step(model, images):
    cls = toy_scheme_class()
    assert issubclass(cls, MaskingScheme)
    scheme = cls(model, model.grid, total_epochs=2)
    mask = train_step(scheme, model, images, 0)
    assert (mask.sum(1) == 32).all()
    assert torch.equal(scheme.select_mask(images, 1), ~mask)
    assert all(p.grad is not None for p in model.mask_tokens)
