"""SparK's sparse-convolution emulation on nnU-Net's CNN encoders, by module swap.

SparK (Tian et al., "Designing BERT for Convolutional Networks: Sparse and Hierarchical Masked Modeling",
ICLR 2023; keyu-tian/SparK ``pretrain/encoder.py``) emulates submanifold sparse convolution on a dense CNN:
masked positions are zero at the input, every conv output is multiplied by the active mask, batch norm
normalises the active positions only, and the current mask reaches the modules as an attribute
(``_cur_active``) instead of an argument. ``pretrain/spark.py`` then fills the masked positions of every
encoder stage with a learned mask token and runs a dense decoder.

Here the same on nnU-Net's ``PlainConvUNet`` / ``ResidualEncoderUNet`` encoders (dynamic-network-architectures):

* ``MaskedInstanceNorm`` replaces ``nn.InstanceNorm{1,2,3}d``: statistics over visible voxels only, output
  zero at masked voxels. Every ``ConvDropoutNormReLU`` ends in it (or in a nonlinearity with f(0) = 0 after
  it), so each conv block re-zeroes masked positions. A conv without a norm after it gets a masked conv.
* Residual adds (``BasicBlockD`` / ``BottleneckD``) add two summands that are both zero at masked positions:
  the main path ends in a masked norm, the skip is the identity, an AvgPool of zero-filled input, or
  AvgPool + 1x1 conv + masked norm. The nonlinearity after the add maps 0 to 0 (checked at swap time).
* The swap keeps every parameter name, so ``network.state_dict()`` keys and shapes are unchanged.

The stage-1 model around the swapped network (mask tokens, the plans' decoder) is ``model.py``.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.modules.instancenorm import _InstanceNorm
from torch.nn.modules.pooling import _AvgPoolNd, _MaxPoolNd

from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from dynamic_network_architectures.building_blocks.regularization import DropPath, SqueezeExcite
from dynamic_network_architectures.building_blocks.residual import BasicBlockD, BottleneckD, StackedResidualBlocks
from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU, StackedConvBlocks

from nnunet_anatomask.errors import PluginError
from nnunet_anatomask.pretraining.grid import MaskGrid


class MaskedForwardError(PluginError, ValueError):
    """The network cannot be run with the masked (sparse) forward; the message names the fix."""


# ==================================================================== masked modules
class MaskedInstanceNorm(nn.Module):
    """Instance norm over visible voxels only (SparK ``SparseBatchNorm2d``, per sample and channel).

    Same parameter names as ``nn.InstanceNorm{1,2,3}d(affine=True)`` (``weight``, ``bias``) and no buffers,
    so a network's state dict is unchanged by the swap. ``visible`` (float {0, 1}, ``[B, 1, *spatial]``) is
    set by ``set_visibility_`` (the CNN model's forward); when it is None the module is a plain instance norm.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.visible: Optional[torch.Tensor] = None
        self.feature_shape: Optional[tuple[int, ...]] = None  # spatial shape at the grid's patch size

    @classmethod
    def from_instance_norm(cls, norm: _InstanceNorm) -> "MaskedInstanceNorm":
        """Masked twin of ``norm`` sharing its Parameter objects."""
        if norm.track_running_stats:  # Ours: running statistics of masked inputs would be meaningless
            raise MaskedForwardError("instance norm with track_running_stats=True is not supported by masked "
                                     "pretraining: use nnU-Net's default norm_op_kwargs (eps, affine)")
        masked = cls(norm.num_features, norm.eps, affine=False)
        masked.affine = norm.affine
        masked.weight, masked.bias = norm.weight, norm.bias
        masked.train(norm.training)
        return masked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.visible is None:  # dense: exactly nn.InstanceNorm with track_running_stats=False
            return F.instance_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        _check_visible(self.visible, x)
        return _masked_instance_norm(x, self.visible, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"


def _masked_instance_norm(x: torch.Tensor, visible: torch.Tensor, weight: Optional[torch.Tensor],
                          bias: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    """Instance norm with mean and biased variance over visible voxels; masked voxels -> exactly 0."""
    # Ours: half-precision inputs (autocast) are normalised in float32; sums over 10^6 voxels overflow fp16.
    compute_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    xc, vis = x.to(compute_dtype), visible.to(compute_dtype)
    dims = tuple(range(2, x.ndim))
    # Ours: a sample with nothing visible at this resolution gives zeros, not NaN
    count = vis.sum(dims, keepdim=True).clamp_min(1.0)
    xv = xc * vis
    mean = xv.sum(dims, keepdim=True) / count
    var = (xv.square().sum(dims, keepdim=True) / count - mean.square()).clamp_min(0.0)
    # Ours: weight and bias folded into one per-(sample, channel) scale and shift: ~4 full-size passes
    # instead of ~8 without torch.compile (the teacher, CPU runs).
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight.view((1, -1) + (1,) * (x.ndim - 2)).to(compute_dtype)
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias.view((1, -1) + (1,) * (x.ndim - 2)).to(compute_dtype)
    y = torch.addcmul(shift * vis, xv, scale)
    return y.to(x.dtype)  # SparK: ``bchw[ii] = nc`` on zeros -> masked positions are exactly 0


class _MaskedConvMixin:
    """SparK ``sp_conv_forward``: conv output multiplied by the visibility (for convs with no norm after them)."""

    visible: Optional[torch.Tensor] = None
    feature_shape: Optional[tuple[int, ...]] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if self.visible is None:
            return y
        _check_visible(self.visible, y)
        return y * self.visible.to(y.dtype)


class MaskedConv1d(_MaskedConvMixin, nn.Conv1d):
    """``nn.Conv1d`` whose output is zero at masked positions."""


class MaskedConv2d(_MaskedConvMixin, nn.Conv2d):
    """``nn.Conv2d`` whose output is zero at masked positions."""


class MaskedConv3d(_MaskedConvMixin, nn.Conv3d):
    """``nn.Conv3d`` whose output is zero at masked positions."""


_MASKED_CONV = {nn.Conv1d: MaskedConv1d, nn.Conv2d: MaskedConv2d, nn.Conv3d: MaskedConv3d}
_MASKED_TYPES = (MaskedInstanceNorm, _MaskedConvMixin)


def _masked_conv(conv: _ConvNd) -> nn.Module:
    """Masked twin of ``conv`` sharing its Parameter objects (SparK rebuilds and copies weights)."""
    if type(conv) not in _MASKED_CONV:
        raise MaskedForwardError(f"conv type {type(conv).__name__} without a norm after it is not supported by "
                                 "masked pretraining: use nnU-Net's conv ops with a norm_op")
    masked = _MASKED_CONV[type(conv)](
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        conv.groups, conv.bias is not None, conv.padding_mode, device="meta")
    masked.weight, masked.bias = conv.weight, conv.bias
    masked.train(conv.training)
    return masked


def _check_visible(visible: torch.Tensor, x: torch.Tensor) -> None:
    if visible.shape[0] != x.shape[0] or visible.shape[2:] != x.shape[2:]:
        raise MaskedForwardError(f"the mask was set for feature maps {tuple(visible.shape)} but this layer sees "
                                 f"{tuple(x.shape)}: feed images of the grid's patch size with the same batch "
                                 "as the cell mask")


# ==================================================================== module swap
# Containers and ops whose masked behaviour is understood (see module docstring); anything else is refused.
# Pools (ResEnc skip AvgPool, pool='avg'/'max' encoders) run dense on zero-filled input and need no mask: an
# output voxel is masked only when every input under it is masked (= 0), as in SparK's SparseAvgPooling /
# SparseMaxPooling (dense pool, then mask).
# Ours: where a window is partly visible (stages deeper than the mask stage only) the zeros enter the
# average / max as in SparK's dense pool; accepted, since nnU-Net's plans downsample with strided convs.
_SUPPORTED = (nn.Sequential, nn.ModuleList, PlainConvEncoder, ResidualEncoder, StackedConvBlocks,
              ConvDropoutNormReLU, StackedResidualBlocks, BasicBlockD, BottleneckD, _InstanceNorm, _DropoutNd,
              DropPath, nn.Identity, _AvgPoolNd, _MaxPoolNd) + _MASKED_TYPES


def sparsify_(network: nn.Module, grid: MaskGrid) -> nn.Module:
    """Swap ``network.encoder``'s norms (and norm-less convs) for masked twins, in place; returns ``network``.

    Refuses (``MaskedForwardError``) batch norm, squeeze-excitation, nonlinearities with f(0) != 0, and
    networks that are not PlainConvUNet / ResidualEncoderUNet-like. Parameters are shared, not copied.
    """
    encoder = encoder_of(network)
    _check_encoder_modules(encoder)
    targets = _masking_targets(encoder)
    shapes = _feature_shapes(encoder, targets, grid.patch_size)
    swaps = {}
    for module in targets:
        if isinstance(module, _MASKED_TYPES):  # swapped by an earlier call: only refresh its shape
            module.feature_shape = shapes[module]
        else:
            swaps[module] = _masked_twin(module, shapes[module])
    _replace_children(encoder, swaps)
    return network


def is_unet_like(network: nn.Module) -> bool:
    """An nnU-Net CNN U-Net: an encoder with stages and strides, a UNetDecoder-like decoder (stages, transpconvs,
    seg_layers). PlainConvUNet and ResidualEncoderUNet are; Primus (a ViT) is not."""
    encoder, decoder = getattr(network, "encoder", None), getattr(network, "decoder", None)
    return all(hasattr(encoder, a) for a in ("stages", "strides", "output_channels")) and \
        all(hasattr(decoder, a) for a in ("stages", "transpconvs", "seg_layers"))


def encoder_of(network: nn.Module) -> nn.Module:
    if not is_unet_like(network):
        raise MaskedForwardError(f"masked pretraining supports PlainConvUNet / ResidualEncoderUNet-like networks "
                                 f"(an .encoder with .stages and .strides, a UNetDecoder), got "
                                 f"{type(network).__name__}: use plans with one of these architectures")
    encoder = network.encoder
    if not getattr(encoder, "return_skips", False):
        raise MaskedForwardError("the encoder does not return its skips (return_skips=False): build the network "
                                 "as a U-Net from the plans (get_network_from_plans)")
    return encoder


def _check_encoder_modules(encoder: nn.Module) -> None:
    """Refuse every encoder module whose masked behaviour is not the SparK one."""
    for name, module in encoder.named_modules():
        where = f"encoder.{name}" if name else "encoder"
        if isinstance(module, _BatchNorm):
            raise MaskedForwardError(f"batch-norm plans are not supported by masked pretraining: re-plan with "
                                     f"instance norm (found {type(module).__name__} at {where})")
        if isinstance(module, SqueezeExcite):
            # Ours: refuse rather than emulate; its global average pool would read masked voxels.
            raise MaskedForwardError(f"squeeze-excitation blocks are not supported by masked pretraining (their "
                                     f"global pool would see masked voxels): use plans without squeeze_excitation "
                                     f"(found at {where})")
        if isinstance(module, _ConvTransposeNd):
            raise MaskedForwardError(f"transposed conv at {where} is not supported in a masked encoder: use "
                                     "nnU-Net's PlainConvUNet or ResidualEncoderUNet")
        if module is encoder or isinstance(module, _SUPPORTED + (_ConvNd,)):
            continue
        if type(module).__module__ == "torch.nn.modules.activation":
            _check_zero_preserving(module, where)
            continue
        raise MaskedForwardError(f"{type(module).__name__} at {where} is not supported by masked pretraining: use "
                                 "nnU-Net's PlainConvUNet or ResidualEncoderUNet with instance norm")


def _check_zero_preserving(nonlin: nn.Module, where: str) -> None:
    """Masked positions stay zero through a nonlinearity only if f(0) = 0 (true for (Leaky)ReLU)."""
    # Ours: SparK's ResNets only use ReLU; we check any nonlinearity once, at swap time.
    param = next(nonlin.parameters(), None)
    zeros = torch.zeros(1, getattr(nonlin, "num_parameters", 1),
                        device=param.device if param is not None else "cpu")
    with torch.no_grad():
        maps_to_zero = bool((nonlin(zeros) == 0).all())
    if not maps_to_zero:
        raise MaskedForwardError(f"nonlinearity {type(nonlin).__name__} at {where} maps 0 to a non-zero value, so "
                                 "masked positions would not stay zero: use a nonlin with f(0) = 0 such as "
                                 "LeakyReLU or ReLU")


def _masking_targets(encoder: nn.Module) -> list[nn.Module]:
    """Every instance norm, and every conv that is not followed by a norm in its ConvDropoutNormReLU
    (including their masked twins from an earlier call, so that sparsify_ is idempotent)."""
    # Ours: SparK masks every conv output; a conv followed by a masked norm is left dense, since the norm
    # ignores its masked positions and re-zeroes them (same visible values, one multiplication less).
    normed_convs = {block.conv for block in encoder.modules()
                    if isinstance(block, ConvDropoutNormReLU) and getattr(block, "norm", None) is not None}
    return [module for module in encoder.modules()
            if isinstance(module, (_InstanceNorm, MaskedInstanceNorm))
            or isinstance(module, _ConvNd) and module not in normed_convs]


def _feature_shapes(encoder: nn.Module, targets: Sequence[nn.Module],
                    patch_size: Sequence[int]) -> dict[nn.Module, tuple[int, ...]]:
    """Output spatial shape of each target at ``patch_size``, from one forward on the meta device (no compute)."""
    if not targets:
        return {}
    # Ours: shapes come from a dry run (weights are copied as empty meta tensors, nothing is allocated), so
    # that set_visibility_ can hand every module its own visibility tensor without any hook at training time.
    names = {module: name for name, module in encoder.named_modules()}
    weightless = {id(t): _meta_like(t) for t in list(encoder.parameters()) + list(encoder.buffers())}
    dry = copy.deepcopy(encoder, weightless)
    dry_modules = dict(dry.named_modules())
    set_visibility_([m for m in dry.modules() if isinstance(m, _MASKED_TYPES)], None, None)  # dense dry run
    shapes: dict[str, tuple[int, ...]] = {}
    for module in targets:
        dry_modules[names[module]].register_forward_hook(
            lambda _m, _inp, out, name=names[module]: shapes.__setitem__(name, tuple(out.shape[2:])))
    first_conv = next(m for m in encoder.modules() if isinstance(m, _ConvNd))
    with torch.no_grad():
        dry(torch.empty(1, first_conv.in_channels, *patch_size, device="meta", dtype=first_conv.weight.dtype))
    return {module: shapes[names[module]] for module in targets}


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    meta = torch.empty_like(t, device="meta")
    return nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta


def _masked_twin(module: nn.Module, feature_shape: tuple[int, ...]) -> nn.Module:
    twin = MaskedInstanceNorm.from_instance_norm(module) if isinstance(module, _InstanceNorm) \
        else _masked_conv(module)
    twin.feature_shape = feature_shape
    return twin


def _replace_children(root: nn.Module, swaps: dict[nn.Module, nn.Module]) -> None:
    """Replace modules everywhere they are registered (``ConvDropoutNormReLU`` holds each op twice)."""
    for parent in list(root.modules()):
        for name, child in list(parent._modules.items()):
            if child is not None and child in swaps:
                parent._modules[name] = swaps[child]


def masked_modules(network: nn.Module) -> list[nn.Module]:
    """The masked modules that ``sparsify_`` put into ``network.encoder``."""
    return [m for m in encoder_of(network).modules() if isinstance(m, _MASKED_TYPES)]


def set_visibility_(modules: Sequence[nn.Module], grid: Optional[MaskGrid],
                    cell_mask: Optional[torch.Tensor]) -> None:
    """Hand every masked module the visibility at its resolution (None = dense); SparK's ``_cur_active``."""
    # Ours: one attribute per module instead of SparK's module-level global, so two networks (e.g. a
    # student and a teacher) can hold different masks; one visibility tensor per distinct resolution.
    per_shape: dict[tuple[int, ...], torch.Tensor] = {}
    for module in modules:
        if cell_mask is None:
            module.visible = None
            continue
        if module.feature_shape not in per_shape:
            per_shape[module.feature_shape] = grid.visible_at(cell_mask, module.feature_shape)
        module.visible = per_shape[module.feature_shape]
