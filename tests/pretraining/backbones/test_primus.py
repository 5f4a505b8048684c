"""The Primus backbone: masked tokens never reach the encoder, drop/restore keep the rotary embedding in step,
features come from the same forward, the hand-over moves everything but the output layer."""
import pytest
import torch
from dynamic_network_architectures.architectures.primus import Primus

from nnunet_anatomask.pretraining.backbones import BackboneError, Encoding, backbone_for
from nnunet_anatomask.pretraining.backbones.primus import PrimusBackbone, TokenDroppingModel, visible_indices
from nnunet_anatomask.pretraining.recipes import NNSSL_EVA_MAE

PATCH = (32, 32, 32)  # 4 x 4 x 4 tokens of 8³


def tiny_primus(channels: int = 1, classes: int = 1, seed: int = 0) -> Primus:
    torch.manual_seed(seed)
    return Primus(channels, 96, (8, 8, 8), classes, eva_depth=2, eva_numheads=2, input_shape=PATCH,
                  drop_path_rate=0.2, scale_attn_inner=True, init_values=0.1).eval()


@pytest.fixture
def model() -> TokenDroppingModel:
    backbone = backbone_for(tiny_primus(), PATCH)
    assert isinstance(backbone, PrimusBackbone) and backbone.grid.cells_per_axis == (4, 4, 4)
    return backbone.masked_model(tiny_primus(), NNSSL_EVA_MAE).eval()


def half_mask(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    keys = torch.rand(2, 64, generator=gen)
    return (keys.argsort(1).argsort(1) < 32).view(2, 4, 4, 4)  # exactly 32 of 64 masked per sample


def test_masked_tokens_never_reach_the_encoder(model):
    """The encoder's sequence is the visible tokens only, and its output ignores masked content."""
    images, mask = torch.randn(2, 1, *PATCH), half_mask()
    lengths = []
    hook = model.network.eva.blocks[0].register_forward_pre_hook(lambda m, args: lengths.append(args[0].shape[1]))
    with torch.no_grad():
        clean = model(images, mask, features=True).encoding.cells
        noisy_images = torch.where(model.grid.to_voxels(mask), 100 * torch.randn_like(images), images)
        noisy = model(noisy_images, mask, features=True).encoding.cells
    hook.remove()
    assert lengths == [32, 32]
    torch.testing.assert_close(noisy, clean, rtol=0, atol=0)
    masked_tokens = mask.unsqueeze(1).expand_as(clean)
    assert (clean[masked_tokens] == 0).all() and (clean[~masked_tokens] != 0).any()


def test_nothing_dropped_equals_primus_own_encoder(model):
    images = torch.randn(2, 1, *PATCH)
    with torch.no_grad():
        tokens = model.network.down_projection(images).flatten(2).transpose(1, 2)
        reference, _ = model.network.eva(tokens)  # Primus adds its position embeddings inside
        ours = model.encode_tokens(model.embed(images), torch.arange(64).repeat(2, 1))
        dense = model.encode(images, None).cells  # a cell mask of None: nothing dropped
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dense, model.to_grid(reference), rtol=1e-5, atol=1e-5)


def test_rotary_embedding_follows_the_kept_tokens(model):
    """Tokens kept in a shuffled order give the same encodings at their positions: the rope is gathered with the
    tokens. Catches a rope applied in cell order (or not broadcast over heads)."""
    images = torch.randn(2, 1, *PATCH)
    order = torch.stack([torch.randperm(64), torch.randperm(64)])
    with torch.no_grad():
        tokens = model.embed(images)
        in_order = model.encode_tokens(tokens, torch.arange(64).repeat(2, 1))
        shuffled = model.encode_tokens(tokens, order)
    torch.testing.assert_close(shuffled, in_order.gather(1, order.unsqueeze(-1).expand(-1, -1, 96)),
                               rtol=1e-5, atol=1e-5)


def test_encoder_output_at_ratio_0_equals_primus_own_forward():
    """Nothing masked: the encoder output on the token grid (features=True) equals what Primus' own forward hands
    its patch decoder, on a patch with three different token counts per axis. Pins the token order end to end (our
    flattening, drop, restore and to_grid against Primus' rearrange), not only on tokens we flattened ourselves.
    Catches: to_grid / embed with swapped axes, a restore that puts tokens back at other positions."""
    patch = (32, 24, 16)  # 4 x 3 x 2 tokens
    torch.manual_seed(0)
    primus = Primus(1, 96, (8, 8, 8), 1, eva_depth=2, eva_numheads=2, input_shape=patch, drop_path_rate=0.2,
                    scale_attn_inner=True, init_values=0.1).eval()
    model = backbone_for(primus, patch).masked_model(primus, NNSSL_EVA_MAE).eval()
    images = torch.randn(2, 1, *patch)
    seen = []
    hook = primus.up_projection.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        primus(images)
        ours = model(images, torch.zeros(2, 4, 3, 2, dtype=torch.bool), features=True).encoding.stages[0]
    hook.remove()
    assert ours.shape == seen[0].shape == (2, 96, 4, 3, 2)
    torch.testing.assert_close(ours, seen[0], rtol=1e-5, atol=1e-5)


def decode_tokens(model, tokens: torch.Tensor) -> torch.Tensor:
    """The light decoder's output tokens [B, N, C] for tokens [B, N, C] at every position (nothing masked)."""
    grid = model.to_grid(tokens)
    return model.decode(Encoding([grid], grid), None)[1][0].flatten(2).transpose(1, 2)


def test_decoder_adds_the_absolute_position_embedding_to_every_token(model):
    """Every position holds the same token (the mask token): the decoder's output must still differ between any
    two positions, which only the absolute embedding can do (with equal tokens attention averages equal values,
    and the rotary embedding only reweights them). Catches: the decoder without eva.pos_embed."""
    with torch.no_grad():
        decoded = decode_tokens(model, model.mask_token.expand(2, 64, -1))
    distances = torch.cdist(decoded[0], decoded[0])
    assert (distances + torch.eye(64) * 1e3).min() > 1e-3


def test_decoder_applies_the_rotary_embedding(model):
    """Absolute embedding zeroed; token 0 differs, the other 63 are equal: their outputs differ only through
    attention weights that depend on the distance to token 0, i.e. the rotary embedding. Catches: the decoder's
    blocks called without rope."""
    with torch.no_grad():
        model.network.eva.pos_embed.zero_()
        tokens = torch.randn(1, 1, 96).expand(2, 64, 96).clone()
        tokens[:, 0] = torch.randn(96)
        decoded = decode_tokens(model, tokens)
    distances = torch.cdist(decoded[0, 1:], decoded[0, 1:])
    assert distances.max() > 1e-3


def test_reconstruction_features_and_nnssl_stochastic_depth(model):
    """Stage 1 keeps nnssl's stochastic depth (drop-path 0.2, rising linearly over the encoder's and over the light
    decoder's blocks): random in training, deterministic in eval mode."""
    images, mask = torch.randn(2, 1, *PATCH), half_mask()
    rates = [[getattr(b.drop_path1, "drop_prob", 0.0) for b in blocks]
             for blocks in (model.network.eva.blocks, model.decoder_blocks)]
    assert rates == [[0.0, pytest.approx(0.2)], [0.0, pytest.approx(0.2)]]
    model.eval()
    out1 = model(images, mask, features=True)
    out2 = model(images, mask)
    torch.testing.assert_close(out1.reconstruction, out2)
    model.train()
    torch.manual_seed(0)
    train_outputs = {tuple(model(images, mask).flatten()[:5].tolist()) for _ in range(6)}
    assert len(train_outputs) > 1
    assert out1.reconstruction.shape == images.shape
    assert out1.decoder_features[0].shape == (2, 96, 4, 4, 4) and model.decoder_channels == [96]
    out1.reconstruction.square().mean().backward()
    assert model.mask_token.grad is not None and model.network.down_projection.proj.weight.grad is not None


def test_unequal_mask_counts_are_refused():
    mask = torch.zeros(2, 4, 4, 4, dtype=torch.bool)
    mask[0, 0] = True
    with pytest.raises(BackboneError, match="same number of masked cells"):
        visible_indices(mask)


def test_extra_state_round_trip_and_handover_of_the_encoder(model, tmp_path):
    extra = model.extra_state_dict()
    assert "mask_token" in extra and any(k.startswith("decoder_blocks.") for k in extra)
    assert not any(k.startswith("network.") for k in extra)
    other = backbone_for(tiny_primus(seed=1), PATCH).masked_model(tiny_primus(seed=1), NNSSL_EVA_MAE)
    other.load_extra_state_dict(extra)
    torch.testing.assert_close(other.mask_token, model.mask_token)
    torch.save({"network_weights": model.network.state_dict()}, tmp_path / "stage1.pth")
    stage2 = tiny_primus(classes=3, seed=2)  # another class count: the patch decoder differs
    keys = backbone_for(stage2, PATCH).handover(str(tmp_path / "stage1.pth"), stage2)
    state = stage2.state_dict()
    assert "eva.pos_embed" in keys and "down_projection.proj.weight" in keys
    assert not any(k.startswith("up_projection.") for k in keys)  # its widths depend on the class count
    for key in keys:
        torch.testing.assert_close(state[key], model.network.state_dict()[key])


def test_2d_patch_is_refused():
    with pytest.raises(BackboneError, match="Primus is a 3D network"):
        backbone_for(tiny_primus(), (32, 32))
