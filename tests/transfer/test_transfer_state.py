"""Checkpoint + target network + mode -> state + report (nnunet_anatomask/transfer/load.py), on networks built by
nnU-Net's get_network_from_plans from small plans that differ in one thing each: input channels, kernel size,
number of stages, patch size (Primus' position embedding). Each with its expected report."""
import pytest
import torch
from dynamic_network_architectures.architectures.primus import Primus
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from nnunet_anatomask.transfer.load import TransferError, check_complete, load_state, transfer_state
from nnunet_anatomask.transfer.parts import follows_classes
from nnunet_anatomask.transfer.report import ADAPTED, AS_IS, FRESH

CNN = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
IMPORTS = ("conv_op", "norm_op", "dropout_op", "nonlin")


def plans_arch(stages: int = 3, kernel0=(3, 3, 3)) -> dict:
    """nnU-Net plans' 'arch_kwargs' of a small 3D PlainConvUNet (widths 4, 8, 16, ...)."""
    return {"n_stages": stages, "features_per_stage": [4 * 2 ** i for i in range(stages)],
            "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [list(kernel0)] + [[3, 3, 3]] * (stages - 1),
            "strides": [[1, 1, 1]] + [[2, 2, 2]] * (stages - 1), "n_conv_per_stage": [2] * stages,
            "n_conv_per_stage_decoder": [2] * (stages - 1), "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True}}


def cnn(channels: int = 1, classes: int = 3, **arch) -> torch.nn.Module:
    torch.manual_seed(channels * 100 + classes + len(arch))
    return get_network_from_plans(CNN, plans_arch(**arch), IMPORTS, channels, classes, deep_supervision=True)


def by_status(report, status: str) -> set:
    return set(report.keys(status))


def counts(report) -> dict:
    return {(p, s): report.count(p, s) for p in ("stem", "encoder", "decoder") for s in (AS_IS, ADAPTED, FRESH)
            if report.count(p, s)}


def test_identical_plans_strict_is_nnunets_load():
    """Every tensor as is but the seg_layers (nnU-Net's load_pretrained_weights); encoder-only leaves the decoder
    fresh; nothing of the checkpoint is unused."""
    source, target = cnn(), cnn()
    state, report = transfer_state(source.state_dict(), target)
    assert by_status(report, FRESH) == {k for k in target.state_dict() if ".seg_layers." in k}
    assert not report.unused and not by_status(report, ADAPTED)
    load_state(target, state)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in source.state_dict().items() if "seg_layers" not in k)
    _, encoder_only = transfer_state(source.state_dict(), cnn(), loading="encoder")
    # 4 tensors per conv block (conv weight and bias, norm weight and bias), 2 blocks per stage; the decoder: 2
    # stages of 2 blocks, 2 transposed convs and 2 seg_layers (weight and bias each)
    assert counts(encoder_only) == {("stem", AS_IS): 8, ("encoder", AS_IS): 16, ("decoder", FRESH): 24}
    assert "decoder: loading the encoder only" in "\n".join(encoder_only.lines())


def test_other_input_channels():
    """1 -> 2 channels: strict leaves the stem's first convolution fresh; adapt spreads it (sum / N)."""
    source = cnn(channels=1)
    first = "encoder.stages.0.0.convs.0.conv.weight"
    _, strict = transfer_state(source.state_dict(), cnn(channels=2))
    assert first in by_status(strict, FRESH)
    state, report = transfer_state(source.state_dict(), cnn(channels=2), mode="adapt")
    assert by_status(report, ADAPTED) == {first}
    assert counts(report) == {("stem", AS_IS): 7, ("stem", ADAPTED): 1, ("encoder", AS_IS): 16, ("decoder", AS_IS): 20,
                              ("decoder", FRESH): 4}
    assert torch.allclose(state[first], source.state_dict()[first].repeat(1, 2, 1, 1, 1) / 2)
    assert f"  adapted: {first}: input channels 1 -> 2: summed and spread evenly" in report.lines()


def test_other_kernel_size():
    """First stage [1, 3, 3] (anisotropic plans): its two convolutions and those of the decoder stage that takes
    its skip are averaged along the first axis; nothing else changes."""
    source, target = cnn(), cnn(kernel0=(1, 3, 3))
    state, report = transfer_state(source.state_dict(), target, mode="adapt")
    assert by_status(report, ADAPTED) == {"encoder.stages.0.0.convs.0.conv.weight",
                                          "encoder.stages.0.0.convs.1.conv.weight",
                                          "decoder.stages.1.convs.0.conv.weight",
                                          "decoder.stages.1.convs.1.conv.weight"}
    assert "kernel (3, 3, 3) -> (1, 3, 3): averaged" in "\n".join(report.lines())
    load_state(target, state)
    key = "encoder.stages.0.0.convs.1.conv.weight"
    assert torch.allclose(target.state_dict()[key], source.state_dict()[key].mean(2, keepdim=True))


def test_more_and_fewer_stages():
    """3 -> 4 stages: the three shared encoder stages load, the fourth starts fresh; decoder stages load by the
    encoder stage whose skip they take (target decoder stage j = checkpoint stage j - 1), the deepest is fresh.
    4 -> 3: the checkpoint's deepest stage and its decoder stage are reported unused."""
    source = cnn(stages=3)
    target = cnn(stages=4)
    state, report = transfer_state(source.state_dict(), target, mode="adapt")
    fresh = by_status(report, FRESH)
    assert {k for k in fresh if k.startswith("encoder.")} == {k for k in target.state_dict() if k.startswith(
        "encoder.stages.3.") and ".all_modules." not in k}  # each tensor once, under its first name
    assert not any(k.startswith(("decoder.stages.1", "decoder.stages.2", "decoder.transpconvs.1")) for k in fresh)
    assert any(k.startswith("decoder.stages.0.") for k in fresh) and "decoder.transpconvs.0.weight" in fresh
    load_state(target, state)
    assert torch.equal(target.state_dict()["decoder.stages.2.convs.0.conv.weight"],
                       source.state_dict()["decoder.stages.1.convs.0.conv.weight"])
    assert any("checkpoint has 3 stages, this network 4" in n for n in report.notes)
    deeper = cnn(stages=4)
    _, fewer = transfer_state(deeper.state_dict(), cnn(stages=3), mode="adapt")
    assert set(fewer.unused) == {k for k in deeper.state_dict() if k.startswith(
        ("encoder.stages.3.", "decoder.stages.0.", "decoder.transpconvs.0.")) and ".all_modules." not in k}
    assert by_status(fewer, FRESH) == {k for k in cnn(stages=3).state_dict() if ".seg_layers." in k}
    assert "unused checkpoint tensors: 18 (encoder.stages.3, decoder.stages.0, decoder.transpconvs.0)" in \
           "\n".join(fewer.lines())


def test_dimensionality_is_refused():
    arch = plans_arch()
    arch.update(conv_op="torch.nn.modules.conv.Conv2d", norm_op="torch.nn.modules.instancenorm.InstanceNorm2d",
                kernel_sizes=[[3, 3]] * 3, strides=[[1, 1]] + [[2, 2]] * 2)
    two_d = get_network_from_plans(CNN, arch, IMPORTS, 1, 3, deep_supervision=True)
    with pytest.raises(TransferError, match="3D convolutions.*2D ones.*Fix"):
        transfer_state(cnn().state_dict(), two_d, mode="adapt")


def primus(patch, channels: int = 1, classes: int = 3) -> Primus:
    """A small Primus as nnU-Net's Primus trainers build it (8^3 patch embedding, EVA blocks, patch decoder)."""
    torch.manual_seed(len(patch) + sum(patch))
    return Primus(channels, 48, (8, 8, 8), classes, 2, 2, tuple(patch), drop_path_rate=0.2, scale_attn_inner=True,
                  init_values=0.1)


def test_primus_other_patch():
    """Patch 32^3 -> 48x32x32: the position embedding is interpolated from a 4x4x4 to a 6x4x4 token grid; strict
    leaves it fresh; without the checkpoint's patch size it cannot be adapted and says so."""
    source = primus((32, 32, 32))
    target = primus((48, 32, 32))
    state, report = transfer_state(source.state_dict(), target, mode="adapt", source_patch=(32, 32, 32),
                                   target_patch=(48, 32, 32))
    assert by_status(report, ADAPTED) == {"eva.pos_embed"} and not by_status(report, FRESH)
    assert "  adapted: eva.pos_embed: position embedding, token grid [4, 4, 4] -> [6, 4, 4]: interpolated " \
           "trilinearly" in report.lines()
    assert state["eva.pos_embed"].shape == target.state_dict()["eva.pos_embed"].shape
    assert counts(report)[("encoder", ADAPTED)] == 1 and counts(report)[("stem", AS_IS)] == 2
    _, strict = transfer_state(source.state_dict(), primus((48, 32, 32)))
    assert by_status(strict, FRESH) == {"eva.pos_embed"}
    _, unknown = transfer_state(source.state_dict(), primus((48, 32, 32)), mode="adapt")
    assert "unknown token grid" in "\n".join(unknown.lines())


def test_primus_other_channels_and_classes():
    """2 input channels and 5 classes: the patch embedding is spread over the channels; the patch decoder, whose
    widths follow the class count (dna's PatchDecode), starts fresh with its reason."""
    state, report = transfer_state(primus((32, 32, 32)).state_dict(), primus((32, 32, 32), 2, 5), mode="adapt",
                                   source_patch=(32, 32, 32), target_patch=(32, 32, 32))
    assert by_status(report, ADAPTED) == {"down_projection.proj.weight"}
    assert all(k.startswith("up_projection.") for k in by_status(report, FRESH))
    assert "  fresh (width (48, 24) there, (48, 32) here): up_projection.decode.0" in report.lines()


def test_report_counts_and_summary():
    """1 -> 2 channels, adapted: the one-line summary counts a tensor loaded as it is or adapted as transferred, per
    part, and names each adaptation; the log lines start with the same counts."""
    _, report = transfer_state(cnn(channels=1).state_dict(), cnn(channels=2), mode="adapt", source="ckpt")
    assert [report.transferred(p) for p in ("stem", "encoder", "decoder")] == [8, 16, 20]
    assert report.summary() == ("ckpt: 44 tensors transferred (stem 8, encoder 16, decoder 20), 4 left at their fresh "
                                "start; adapted encoder.stages.0.0.convs.0.conv.weight: input channels 1 -> 2: "
                                "summed and spread evenly")
    assert report.lines()[0] == ("Transfer report: ckpt -> this network (transfer adapt, loading all): 44 tensors "
                                 "transferred (stem 8, encoder 16, decoder 20), 4 left at their fresh start; tensors "
                                 "per part:")


def test_output_layer_and_always_adapted():
    """``with_output`` loads the seg_layers where their shape matches (a stage-1 checkpoint continued in stage 1);
    ``always_adapted`` adapts the named tensor in strict mode too (an nnssl checkpoint's input projection), and
    only that one."""
    source = cnn(channels=1, classes=1)
    _, plain = transfer_state(source.state_dict(), cnn(channels=1, classes=1))
    state, with_output = transfer_state(source.state_dict(), cnn(channels=1, classes=1), with_output=True)
    assert {k for k in by_status(plain, FRESH)} == {k for k in state if ".seg_layers." in k} != set()
    assert not by_status(with_output, FRESH) and not with_output.unused
    first = "encoder.stages.0.0.convs.0.conv.weight"
    state, report = transfer_state(source.state_dict(), cnn(channels=2, classes=1, kernel0=(1, 3, 3)),
                                   always_adapted=[first])
    assert by_status(report, ADAPTED) == {first} and "(3, 3, 3) -> (1, 3, 3)" in "\n".join(report.lines())
    assert "encoder.stages.0.0.convs.1.conv.weight" in by_status(report, FRESH)  # strict for every other tensor


def test_check_complete_names_misfits_but_not_choices():
    """Strict completeness: fresh by choice (encoder-only loading, the output layer) or by ``may_stay_fresh`` passes;
    a tensor of another shape is named with its reason and the caller's fix; checkpoint tensors that went nowhere
    fail only where they must not be left over."""
    source = cnn(classes=3)
    _, encoder_only = transfer_state(source.state_dict(), cnn(classes=5), loading="encoder", source="ckpt")
    check_complete(encoder_only, lambda key: False, "FIX")
    target = cnn(channels=2)
    _, report = transfer_state(source.state_dict(), target, source="ckpt")
    check_complete(report, lambda key: key.startswith("encoder.stages.0.0.convs.0."), "FIX")
    with pytest.raises(TransferError, match=r"^ckpt does not fit this network: encoder.stages.0.0.convs.0.conv.weight "
                                            r"\(shape \(4, 1, 3, 3, 3\) there, \(4, 2, 3, 3, 3\) here\)\. FIX$"):
        check_complete(report, lambda key: False, "FIX")
    _, fewer = transfer_state(cnn(stages=4).state_dict(), cnn(stages=3), source="ckpt")
    check_complete(fewer, lambda key: follows_classes(cnn(stages=3), key) or key.startswith("decoder."), "FIX")
    with pytest.raises(TransferError, match=r"not in this network: encoder.stages.3.0.convs.0.conv.weight, "):
        check_complete(fewer, lambda key: True, "FIX", unused_allowed=False)


def test_follows_classes():
    """The CNN's seg_layers; Primus' whole patch decoder (its widths follow the class count)."""
    assert follows_classes(cnn(), "decoder.seg_layers.0.weight") and not follows_classes(cnn(), "decoder.stages.0.x")
    assert follows_classes(primus((32, 32, 32)), "up_projection.decode.0.0.weight")
    assert not follows_classes(primus((32, 32, 32)), "eva.pos_embed")
