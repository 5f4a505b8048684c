"""The masked-model contract (backbones/base.py, docs/architecture.md), checked on both backbones: one encode
signature, an encoder-only forward, decode, features from the same forward, declared extra state."""
import pytest
import torch

from nnunet_anatomask.pretraining.backbones import BackboneError, MaskedModel, backbone_for
from nnunet_anatomask.pretraining.recipes import NNSSL_EVA_MAE
from tests.pretraining.backbones.test_primus import PATCH as PRIMUS_PATCH, tiny_primus
from tests.pretraining.schemes.conftest import tiny_model


def build(backbone: str) -> MaskedModel:
    torch.manual_seed(0)
    if backbone == "cnn":
        return tiny_model()
    return backbone_for(tiny_primus(), PRIMUS_PATCH).masked_model(tiny_primus(), NNSSL_EVA_MAE)


def half_mask(model: MaskedModel, batch: int = 2) -> torch.Tensor:
    keys = torch.rand(batch, model.grid.num_cells, generator=torch.Generator().manual_seed(3))
    return (keys.argsort(1).argsort(1) < model.grid.num_cells // 2).view(batch, *model.grid.cells_per_axis)


def decoder_modules(model: MaskedModel) -> list[torch.nn.Module]:
    """Every module of the decoder side (nothing the encoder needs), leaves included: the CNN model runs the
    decoder's parts itself, never the decoder module's own forward."""
    if hasattr(model, "decoder_blocks"):
        return [*model.decoder_blocks.modules(), *model.network.up_projection.modules()]
    encoder = {id(m) for m in model.network.encoder.modules()}  # nnU-Net's UNetDecoder holds the encoder too
    return [m for m in model.network.decoder.modules() if id(m) not in encoder]


@pytest.fixture(params=["cnn", "primus"])
def model(request) -> MaskedModel:
    return build(request.param).eval()


def test_forward_is_encode_then_decode(model):
    images, mask = torch.randn(2, 1, *model.grid.patch_size), half_mask(model)
    with torch.no_grad():
        out = model(images, mask, features=True)
        encoding = model.encode(images, mask)
        reconstruction, decoder_features = model.decode(encoding, mask)
    assert isinstance(model, MaskedModel)
    torch.testing.assert_close(out.reconstruction, reconstruction, rtol=0, atol=0)
    torch.testing.assert_close(model(images, mask), reconstruction, rtol=0, atol=0)
    assert [f.shape[1] for f in decoder_features] == model.decoder_channels
    assert [s.shape[1] for s in encoding.stages] == model.encoder_channels
    assert reconstruction.shape == images.shape


def test_encode_runs_no_decoder_and_is_zero_at_masked_cells(model):
    """The encoder-only forward (GL-MAE's teacher embedding, AMLP's cell features): no decoder module runs; the
    features at cell resolution are exactly 0 on masked cells and not on visible ones."""
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in decoder_modules(model)]
    images, mask = torch.randn(2, 1, *model.grid.patch_size), half_mask(model)
    with torch.no_grad():
        cells = model.encode(images, mask).cells
    for hook in hooks:
        hook.remove()
    assert calls == []
    assert cells.shape == (2, model.cell_channels, *model.grid.cells_per_axis)
    masked = mask.unsqueeze(1).expand_as(cells)
    assert (cells[masked] == 0).all() and (cells[~masked] != 0).any()


def test_no_mask_is_the_dense_forward(model):
    images = torch.randn(2, 1, *model.grid.patch_size)
    nothing = torch.zeros(2, *model.grid.cells_per_axis, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(model(images, None), model(images, nothing), rtol=1e-5, atol=1e-5)


def test_extra_state_is_declared_and_round_trips(model):
    extra = model.extra_state_dict()
    assert extra and {k.split(".")[0] for k in extra} <= set(model.extra_state)
    undeclared = [k for k in model.state_dict() if k.split(".")[0] not in ("network", *model.extra_state)]
    assert undeclared == []
    fresh = build("cnn" if hasattr(model, "mask_tokens") else "primus")
    fresh.load_extra_state_dict(extra)
    for key, value in fresh.extra_state_dict().items():
        assert torch.equal(value, extra[key]), key
    key = next(iter(extra))
    with pytest.raises(BackboneError, match=f"'{key}' is missing, unexpected or of another shape.*Fix: resume"):
        fresh.load_extra_state_dict({**extra, key: torch.zeros(3, 3, 3)})
    with pytest.raises(BackboneError, match="'surplus' is missing, unexpected"):
        fresh.load_extra_state_dict({**extra, "surplus": torch.zeros(1)})


def test_undeclared_state_is_refused(model):
    """A model that holds state outside `network` and its declared extra state would lose it in checkpoints."""
    model.register_buffer("stray", torch.zeros(1))
    with pytest.raises(BackboneError, match="neither network weights nor declared extra state.*stray"):
        model.extra_state_dict()
