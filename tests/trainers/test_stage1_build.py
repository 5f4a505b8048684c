"""Stage 1 builds the network the way the trainer does, the backbone derives its grid, and the hand-over into
stage 2 moves every encoder and decoder tensor (in-process, on the demo plans)."""
import pytest
from torch import nn
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from nnunet_anatomask.pretraining.backbones import BackboneError
from nnunet_anatomask.trainers.registry import nnUNetTrainerAnatoMask, nnUNetTrainerRandomMask
from tests.trainers.helpers import assert_cnn_handover, load_weights_only, make_trainer


class NarrowRandomMask(nnUNetTrainerRandomMask):
    """A user's trainer whose build_network_architecture overrides the plans (half the widths, 3 stages)."""

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                                   enable_deep_supervision=True) -> nn.Module:
        kwargs = dict(configuration_manager.network_arch_init_kwargs)
        kwargs.update(n_stages=3, features_per_stage=[4, 8, 16], kernel_sizes=kwargs["kernel_sizes"][:3],
                      strides=kwargs["strides"][:3], n_conv_per_stage=[1, 1, 1], n_conv_per_stage_decoder=[1, 1])
        return get_network_from_plans(configuration_manager.network_arch_class_name, kwargs,
                                      configuration_manager.network_arch_init_kwargs_req_import, num_input_channels,
                                      num_output_channels, allow_init=True, deep_supervision=enable_deep_supervision)


class NotAUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Conv3d(1, 1, 1)


class UnknownNetworkRandomMask(nnUNetTrainerRandomMask):
    @staticmethod
    def build_network_architecture(*args, **kwargs) -> nn.Module:
        return NotAUNet()


def test_stage1_network_is_the_trainers_override(demo3d, monkeypatch, tmp_path):
    """Catches: stage 1 building from the plans (get_network_from_plans) instead of the trainer's override,
    which would pretrain another network than the one fine-tuned; and a grid read from the plans' strides."""
    trainer = make_trainer(demo3d, NarrowRandomMask, monkeypatch, tmp_path)
    runner = trainer.stage1
    assert runner.grid.cell_size == (4, 4, 4)  # from the built 3-stage encoder (the plans give 16³ cells)
    runner.build()
    assert list(runner.model.network.encoder.output_channels) == [4, 8, 16]
    trainer.initialize()
    stage2 = trainer.network.state_dict()
    for key, tensor in runner.model.network.state_dict().items():
        if ".seg_layers." not in key:
            assert stage2[key].shape == tensor.shape, key


def test_unknown_network_is_refused_before_any_work(demo3d, monkeypatch, tmp_path):
    with pytest.raises(BackboneError, match="no backbone for NotAUNet.*Fix"):
        make_trainer(demo3d, UnknownNetworkRandomMask, monkeypatch, tmp_path)
    assert not (tmp_path / demo3d.dataset_name).exists() or not any((tmp_path / demo3d.dataset_name).rglob("*.pth"))


def test_scheme_trainer_hands_every_encoder_and_decoder_tensor_over(demo3d, monkeypatch, tmp_path):
    """nnUNetTrainerAnatoMask's own hand-over (the path nnUNetv2_train takes): after load_stage1_weights every
    tensor but the output layer equals the stage-1 checkpoint's. Catches: a hand-over that skips the decoder (or
    the encoder), or loads nothing."""
    trainer = make_trainer(demo3d, nnUNetTrainerAnatoMask, monkeypatch, tmp_path)
    trainer.stage1.build()
    path = trainer.stage1.final_checkpoint
    trainer.stage1.save(path)
    trainer.initialize()
    trainer.load_stage1_weights(path)
    weights = load_weights_only(path)["network_weights"]
    assert_cnn_handover(trainer.network.state_dict(), weights)
