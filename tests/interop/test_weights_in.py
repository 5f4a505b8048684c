"""Theirs in (interop/weights_in.py, through the transfer library) on the nnssl-schema fixtures: what goes where, the counts, the adaptations with
known answers, and the messages for a wrong key or another architecture."""
import pytest
import torch

from nnunet_anatomask.checkpoint_io import CheckpointError
from nnunet_anatomask.interop.architectures import build
from nnunet_anatomask.interop.weights_in import is_foreign_nnssl, transfer
from nnunet_anatomask.transfer.parts import parts
from nnunet_anatomask.transfer.report import FRESH
from tests.interop import nnssl_fixtures as fx

PATCH = [32, 32, 32]


@pytest.fixture(scope="module")
def resenc():
    return fx.resenc_checkpoint()


@pytest.fixture(scope="module")
def primus():
    return fx.primus_checkpoint()


def unique(module) -> int:
    """Tensors of a module counted once (a conv is listed as '.conv' and '.all_modules.0')."""
    return len({v.data_ptr() for v in module.state_dict().values()})


def resenc_network(in_channels: int = 1, classes: int = 2):
    arch = {"arch_class_name": "ResidualEncoderUNet", "arch_kwargs": fx.RESENC_KWARGS,
            "arch_kwargs_requiring_import": ["conv_op", "norm_op", "nonlin"]}
    return build(arch, in_channels, classes, PATCH, deep_supervision=True)


def test_resenc_stem_and_encoder_come_from_the_plans_keys_decoder_stays_fresh(resenc):
    """Every stem and encoder tensor equals the fixture's tensor under the plan's (other) key names; every decoder
    tensor keeps its fresh value; the counts are the network's own stem / encoder / decoder tensor counts.
    Mutation caught: loading by name (nothing matches 'model.'), or loading the decoder."""
    network = resenc_network()
    fresh = {k: v.clone() for k, v in network.state_dict().items()}
    result = transfer(resenc, network, PATCH, "fixture", "FIX")
    state, weights = network.state_dict(), resenc["network_weights"]
    for key in network.encoder.state_dict():
        assert torch.equal(state[f"encoder.{key}"], weights[f"{fx.PREFIX}encoder.{key}"]), key
    decoder = [k for k in state if k.startswith("decoder.") and not k.startswith("decoder.encoder.")]
    assert decoder and all(torch.equal(state[k], fresh[k]) for k in decoder)
    stem, stages = unique(network.encoder.stem), unique(network.encoder.stages)
    counts = tuple(result.transferred(part) for part in ("stem", "encoder", "decoder"))
    assert counts == (stem, stages, 0)
    fresh = len(result.keys(FRESH))
    assert fresh == unique(network.decoder) - stem - stages  # the decoder holds a reference to the encoder
    assert sum(counts) + fresh == len(parts(network)) == unique(network)
    assert result.summary() == (f"fixture: {stem + stages} tensors transferred (stem {stem}, encoder {stages}, "
                                f"decoder 0), {fresh} left at their fresh start")


def test_one_channel_stem_is_spread_over_two_channels(resenc):
    """nnU-Net main's rule: the 1-channel input projection repeated over the channels and divided by their number."""
    network = resenc_network(in_channels=2)
    result = transfer(resenc, network, PATCH, "fixture", "FIX")
    source = resenc["network_weights"][f"{fx.PREFIX}encoder.stem.convs.0.conv.weight"]
    loaded = network.encoder.stem.convs[0].conv.weight
    assert loaded.shape[1] == 2 and torch.allclose(loaded, torch.cat([source, source], 1) / 2)
    assert "; adapted encoder.stem.convs.0.conv.weight: input channels 1 -> 2: summed and spread evenly" \
        in result.summary()


def test_primus_position_embedding_is_interpolated_to_the_target_grid(primus):
    """A position embedding that is linear along one token axis stays linear after trilinear resizing (known
    answer): 8 tokens with values 0..7 along the first axis become 4 tokens at 0.5, 2.5, 4.5, 6.5 (align_corners
    False: the centres of pairs). Mutation caught: tokens unflattened in another axis order."""
    ckpt = {**primus, "network_weights": dict(primus["network_weights"])}
    width = ckpt["network_weights"]["eva.pos_embed"].shape[-1]
    ramp = torch.arange(8.0).reshape(8, 1, 1, 1).expand(8, 8, 8, width)
    ckpt["network_weights"]["eva.pos_embed"] = ramp.reshape(1, 512, width).clone()
    network = build(primus["nnssl_adaptation_plan"]["architecture_plans"], 1, 3, PATCH)
    result = transfer(ckpt, network, PATCH, "fixture", "FIX")
    grid = network.eva.pos_embed.detach().reshape(4, 4, 4, width)
    assert torch.allclose(grid[:, 1, 2, 5], torch.tensor([0.5, 2.5, 4.5, 6.5]))
    assert torch.allclose(grid[2], torch.full((4, 4, width), 4.5))
    assert (result.transferred("stem"), result.transferred("decoder")) == (2, 0)
    assert result.transferred("encoder") == unique(network.eva)
    assert "adapted eva.pos_embed: position embedding, token grid [8, 8, 8] -> [4, 4, 4]: interpolated trilinearly" \
        in result.summary()


def test_wrong_key_names_the_key_and_what_the_checkpoint_holds(resenc):
    with pytest.raises(CheckpointError) as info:
        transfer(fx.with_wrong_key(resenc), resenc_network(), PATCH, "fixture", "FIX")
    message = str(info.value)
    assert "key_to_encoder 'model.encoder.stage' names no tensor" in message
    assert "model.encoder.stages" in message and "Fix:" in message


def test_other_architecture_ends_with_the_fix(resenc):
    """A ResEnc checkpoint into a PlainConvUNet: the tensors that differ, then the caller's fix sentence; nothing
    is loaded. Mutation caught: a misfit left fresh silently (strict loading as the adapting one)."""
    plain = build({"arch_class_name": "PlainConvUNet", "arch_kwargs_requiring_import": ["conv_op", "norm_op", "nonlin"],
                   "arch_kwargs": {**{k: v for k, v in fx.RESENC_KWARGS.items() if k != "n_blocks_per_stage"},
                                   "n_conv_per_stage": [1, 1, 1, 1]}}, 1, 2, PATCH)
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"^fixture does not fit this network: encoder.stages.0.0.convs.0.conv"
                                              r".weight \(not in the checkpoint\), .*; not in this network: "
                                              r"encoder.stages.0.convs.0.conv.weight, .*THE FIX$"):
        transfer(resenc, plain, PATCH, "fixture", "THE FIX")
    assert all(torch.equal(v, before[k]) for k, v in plain.state_dict().items())


def test_only_checkpoints_without_a_scheme_are_foreign(resenc):
    assert is_foreign_nnssl(resenc)
    assert not is_foreign_nnssl({**resenc, "scheme": "AnatoMask"})  # ours carry the plan and the scheme
    assert not is_foreign_nnssl({"network_weights": {}})
