import pytest
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from nnunet_anatomask.pretraining.backbones.cnn.grid import cnn_grid
from nnunet_anatomask.pretraining.backbones.cnn.model import MaskedReconstructionModel

STRIDES = [[1, 1, 1], [2, 2, 2], [2, 2, 2]]


def tiny_model(ndim: int = 3) -> MaskedReconstructionModel:
    """A 3-stage PlainConvUNet with 4-8-16 features on 16³ patches (16² with ndim=2): 4 cells of 4 per axis."""
    conv, norm = ("Conv3d", "InstanceNorm3d") if ndim == 3 else ("Conv2d", "InstanceNorm2d")
    strides = [s[:ndim] for s in STRIDES]
    kwargs = dict(n_stages=3, features_per_stage=[4, 8, 16], conv_op=f"torch.nn.modules.conv.{conv}",
                  kernel_sizes=[[3] * ndim] * 3, strides=strides, n_conv_per_stage=[1, 1, 1],
                  n_conv_per_stage_decoder=[1, 1], conv_bias=True,
                  norm_op=f"torch.nn.modules.instancenorm.{norm}",
                  norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None, dropout_op_kwargs=None,
                  nonlin="torch.nn.LeakyReLU", nonlin_kwargs={"inplace": True})
    network = get_network_from_plans("dynamic_network_architectures.architectures.unet.PlainConvUNet", kwargs,
                                     ["conv_op", "norm_op", "dropout_op", "nonlin"], 1, 1, deep_supervision=False)
    return MaskedReconstructionModel(network, cnn_grid((16,) * ndim, strides))


@pytest.fixture
def model() -> MaskedReconstructionModel:
    torch.manual_seed(0)
    return tiny_model()


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(3, 1, 16, 16, 16)


def train_step(scheme, model, images, epoch: int) -> torch.Tensor:
    """One stage-1 step as Stage1Runner does it (without the optimiser); returns the step's cell mask."""
    out = scheme.step({"data": images}, model, epoch)
    out.loss.backward()
    scheme.on_step_end(epoch)
    return out.picture.cell_mask
