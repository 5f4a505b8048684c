"""How a stage-2 trainer takes pretrained weights, in-process on the shared plans: the adapting transfer across
real plans that differ in channels and kernels (demo 3d -> the 2-channel anisotropic dataset), its report in the
fold's log; strict stays the default with its messages; encoder-only loading over nnU-Net's own -pretrained_weights
loader; refusals before any work."""
import glob
import os

import pytest
import torch
from nnunetv2.run.run_training import maybe_load_checkpoint

from nnunet_anatomask import knobs
from nnunet_anatomask.checkpoint_io import CheckpointError
from nnunet_anatomask.trainers.registry import nnUNetTrainerAnatoMask, nnUNetTrainerFinetune, nnUNetTrainerScratch
from nnunet_anatomask.trainers.stage2 import ConfigurationError
from nnunet_anatomask.transfer.parts import parts
from tests.trainers.helpers import make_trainer


@pytest.fixture
def demo_checkpoint(demo3d, monkeypatch, tmp_path):
    """An nnU-Net stage-2 checkpoint of the demo plans (3d, one channel): a Scratch network saved by nnU-Net."""
    for knob in (knobs.TRANSFER, knobs.PRETRAINED_PARTS, knobs.PRETRAINED_WEIGHTS):
        monkeypatch.delenv(knob, raising=False)
    trainer = make_trainer(demo3d, nnUNetTrainerScratch, monkeypatch, tmp_path / "source")
    trainer.initialize()
    path = os.path.join(trainer.output_folder, "checkpoint_final.pth")
    trainer.save_checkpoint(path)
    return path, {k: v.clone() for k, v in trainer.network.state_dict().items()}


def fold_log(trainer) -> str:
    return "".join(open(p).read() for p in glob.glob(os.path.join(trainer.output_folder, "training_log_*.txt")))


def test_adapting_transfer_across_real_plans(demo3d, aniso2ch, demo_checkpoint, monkeypatch, tmp_path):
    """Demo (1 channel, 3x3x3 kernels) -> Aniso (2 channels, 1x3x3 kernels where the spacing is coarse): the stem is
    spread over the channels, the anisotropic kernels are averaged, the plans' differences are listed; the report
    is in the fold's log and the network holds the adapted weights. Strict, the same pair stops with the existing
    message."""
    path, source = demo_checkpoint
    monkeypatch.setenv(knobs.PRETRAINED_WEIGHTS, path)
    monkeypatch.setenv(knobs.TRANSFER, "adapt")
    trainer = make_trainer(aniso2ch, nnUNetTrainerFinetune, monkeypatch, tmp_path / "target")
    trainer.initialize()
    trainer.load_pretrained()
    log = fold_log(trainer)
    assert f"Transfer report: {knobs.PRETRAINED_WEIGHTS}={path} -> this network (transfer adapt, loading all): " in log
    assert "adapted: encoder.stages.0.0.convs.0.conv.weight: input channels 1 -> 2: summed and spread evenly" in log
    assert "(3, 3, 3) -> (1, 3, 3): averaged" in log
    assert "note: plans differ (checkpoint vs this run): patch_size" in log
    key = "encoder.stages.0.0.convs.0.conv.weight"
    own = trainer.network.state_dict()[key]
    expected = source[key].repeat(1, 2, 1, 1, 1) / 2
    if own.shape[2] == 1:
        expected = expected.mean(2, keepdim=True)
    assert torch.allclose(own, expected)
    monkeypatch.setenv(knobs.TRANSFER, "strict")
    strict = make_trainer(aniso2ch, nnUNetTrainerFinetune, monkeypatch, tmp_path / "strict")
    with pytest.raises(CheckpointError, match="was pretrained with the plans of|does not fit this network"):
        strict.initialize()


def test_encoder_only_over_nnunets_loader(demo3d, demo_checkpoint, monkeypatch, tmp_path):
    """-pretrained_weights (nnU-Net loads every tensor but seg_layers after initialize) with
    nnUNet_anatomask_pretrained_parts=encoder: at epoch 0 the decoder gets its fresh start back, the encoder keeps
    the file's weights, and the report says so."""
    path, source = demo_checkpoint
    monkeypatch.setenv(knobs.PRETRAINED_PARTS, "encoder")
    trainer = make_trainer(demo3d, nnUNetTrainerFinetune, monkeypatch, tmp_path / "target")
    maybe_load_checkpoint(trainer, continue_training=False, validation_only=False, pretrained_weights_file=path)
    fresh = dict(trainer.fresh_decoder)
    trainer.load_pretrained()
    state, part = trainer.network.state_dict(), parts(trainer.network)
    assert all(torch.equal(state[k], source[k]) for k, p in part.items() if p != "decoder")
    assert fresh and all(torch.equal(state[k], v) for k, v in fresh.items())
    assert not any(torch.equal(state[k], source[k]) for k in fresh if state[k].ndim >= 3)
    assert "(transfer strict, loading encoder)" in fold_log(trainer)


def test_refusals_before_any_work(demo3d, demo_checkpoint, monkeypatch, tmp_path):
    """adapt with nnU-Net's -pretrained_weights (its loader needs identical shapes), adapt with a scheme trainer
    (stage 1 pretrains on this run's plans), the pretrained-weights setting with a trainer that would ignore it, a
    bad knob value: each a clear message with the fix."""
    path, _ = demo_checkpoint
    monkeypatch.setenv(knobs.TRANSFER, "adapt")
    trainer = make_trainer(demo3d, nnUNetTrainerFinetune, monkeypatch, tmp_path / "a")
    maybe_load_checkpoint(trainer, continue_training=False, validation_only=False, pretrained_weights_file=path)
    with pytest.raises(ConfigurationError, match=f"cannot take -pretrained_weights.*{knobs.PRETRAINED_WEIGHTS}="):
        trainer.load_pretrained()  # at stage 2's start, before any training step
    with pytest.raises(ConfigurationError, match=f"{knobs.TRANSFER}=adapt is for nnUNetTrainerFinetune"):
        make_trainer(demo3d, nnUNetTrainerAnatoMask, monkeypatch, tmp_path / "b")
    monkeypatch.delenv(knobs.TRANSFER)
    monkeypatch.setenv(knobs.PRETRAINED_WEIGHTS, path)
    with pytest.raises(ConfigurationError, match=f"{knobs.PRETRAINED_WEIGHTS} is set.*would ignore it"):
        make_trainer(demo3d, nnUNetTrainerAnatoMask, monkeypatch, tmp_path / "d")
    monkeypatch.delenv(knobs.PRETRAINED_WEIGHTS)
    monkeypatch.setenv(knobs.TRANSFER, "loose")
    with pytest.raises(knobs.KnobError, match=f"{knobs.TRANSFER}='loose' is not one of strict, adapt"):
        make_trainer(demo3d, nnUNetTrainerScratch, monkeypatch, tmp_path / "c")
    assert not os.path.exists(tmp_path / "c" / demo3d.dataset_name)  # refused before nnU-Net made the folder
