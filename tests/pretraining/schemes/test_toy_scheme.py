"""docs/architecture.md's "add a scheme in one file" examples, executed as written: the checkerboard masking scheme
(two masked forwards, a head on decoder features) and the two-views contrastive scheme (no mask, the encoder alone),
through the runner's step on both backbones and, for two-views, a whole stage-1 run of the real runner."""
import os
import re

import pytest
import torch

import nnunet_anatomask.trainers.registry as trainers
from nnunet_anatomask.pretraining.backbones import backbone_for
from nnunet_anatomask.pretraining.recipes import NNSSL_EVA_MAE
from nnunet_anatomask.pretraining.schemes import SCHEMES, MaskingScheme, Scheme
from nnunet_anatomask.trainers.stage1 import Stage1Runner
from tests.pretraining.backbones.test_primus import PATCH as PRIMUS_PATCH, tiny_primus
from tests.pretraining.schemes.conftest import tiny_model
from tests.trainers.test_stage1_loop import cpu_loop

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "architecture.md")


def doc_blocks() -> list[str]:
    text = open(DOC).read().split("## Adding a scheme in one file")[1]
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.fixture
def doc_schemes():
    """Both examples executed as written; they register themselves, and are unregistered afterwards."""
    saved = dict(SCHEMES)
    namespace = {}
    for i, code in enumerate(doc_blocks()):
        namespace[i] = {"__name__": f"toy_scheme_from_docs_{i}"}
        exec(compile(code, "docs/architecture.md", "exec"), namespace[i])
    yield namespace[0]["CheckerboardScheme"], namespace[1]["TwoViewsScheme"]
    SCHEMES.clear()
    SCHEMES.update(saved)


def masked_model(backbone: str):
    torch.manual_seed(0)
    if backbone == "cnn":
        return tiny_model()
    return backbone_for(tiny_primus(), PRIMUS_PATCH).masked_model(tiny_primus(), NNSSL_EVA_MAE)


def test_the_two_views_example_is_at_most_60_lines():
    assert len(doc_blocks()[1].strip().splitlines()) <= 60


class CountingModel(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, images, cell_mask, features=False):
        self.calls.append(cell_mask.clone())
        return self.model(images, cell_mask, features=features)


@pytest.mark.parametrize("backbone", ["cnn", "primus"])
def test_checkerboard_from_docs_runs_through_the_runner(doc_schemes, backbone):
    cls = doc_schemes[0]
    assert issubclass(cls, MaskingScheme) and SCHEMES["Checkerboard"] is cls  # it registered itself
    assert trainers.scheme_trainer(cls).__name__ == "nnUNetTrainerCheckerboard"
    model = masked_model(backbone)
    images = torch.randn(2, 1, *model.grid.patch_size)
    scheme = cls(model, model.grid, total_epochs=2)
    loop = cpu_loop(model, scheme)
    loop.forward = counting = CountingModel(model)
    head_before = scheme.head.weight.detach().clone()
    out = loop.train_step({"data": images}, 0)
    first, second = (m.view(images.shape[0], -1) for m in counting.calls)
    assert len(counting.calls) == 2 and torch.equal(second, ~first) and (first.sum(1) == 32).all()
    assert torch.equal(scheme.select_mask(images, 1).cells, ~scheme.select_mask(images, 0).cells)
    assert torch.isfinite(out.figures["loss"]) and set(out.picture.maps) == {"predicted error"}
    assert not torch.equal(scheme.head.weight, head_before)  # the head is trained by the runner's optimiser
    assert set(scheme.state_dict()) == {"head.weight", "head.bias"}  # scheme_state, not network_weights


@pytest.mark.parametrize("backbone", ["cnn", "primus"])
def test_two_views_from_docs_trains_through_the_runner(doc_schemes, backbone):
    """A scheme with no mask: the runner's step trains the encoder and the head; no masked forward, no decoder."""
    cls = doc_schemes[1]
    assert issubclass(cls, Scheme) and not issubclass(cls, MaskingScheme) and SCHEMES["TwoViews"] is cls
    assert trainers.scheme_trainer(cls, trainers.STAGE2[1]).__name__ == "nnUNetTrainerTwoViews_PrimusS"
    model = masked_model(backbone)
    scheme = cls(model, model.grid, total_epochs=3)
    loop = cpu_loop(model, scheme)
    encoder = [p for name, p in model.network.named_parameters() if not name.startswith(("decoder.", "up_proj"))]
    before = [p.detach().clone() for p in encoder] + [p.detach().clone() for p in scheme.head.parameters()]
    torch.manual_seed(1)
    for epoch in range(3):
        out = loop.train_step({"data": torch.randn(4, 1, *model.grid.patch_size)}, epoch)
        assert torch.isfinite(out.figures["loss"]) and 0 <= out.figures["pair_accuracy"] <= 1
    assert out.picture.cell_mask is None and out.picture.prediction is None
    after = encoder + list(scheme.head.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(after[-4:], before[-4:]))  # the head trained
    assert sum(not torch.equal(a, b) for a, b in zip(after, before)) > len(after) // 2  # and the encoder


def test_two_views_from_docs_runs_a_whole_stage1(doc_schemes, demo3d, monkeypatch, tmp_path):
    """The real Stage1Runner on the demo plans (1 epoch x 2 iterations): log with the scheme's figure, a picture
    without a mask, a weights_only checkpoint with its settings, the summary."""
    from nnunet_anatomask.trainers.registry import nnUNetTrainerRandomMask
    from tests.trainers.helpers import load_weights_only, make_trainer, stage1_log_text
    for knob, value in (("pretrain_epochs", "1"), ("iters_per_epoch", "2")):
        monkeypatch.setenv(f"nnUNet_anatomask_{knob}", value)
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    trainer = make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path)  # plans, data, device
    monkeypatch.setenv("nnUNet_anatomask_scheme_config", '{"temperature": 0.2}')  # a TwoViews setting
    runner = Stage1Runner(trainer, doc_schemes[1])  # any scheme class: the runner is not changed for it
    ckpt = load_weights_only(runner.run())
    assert ckpt["scheme"] == "TwoViews" and ckpt["scheme_settings"]["temperature"] == 0.2
    assert set(ckpt["scheme_state"]["scheme"]) == {"head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"}
    assert len(ckpt["logging"]["pair_accuracy"]) == 1
    assert os.path.isfile(os.path.join(runner.folder, "reconstruction_epoch_0000.png"))
    assert "temperature=0.2*" in stage1_log_text(trainer.output_folder)
