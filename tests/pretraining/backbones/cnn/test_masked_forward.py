"""Tests of the SparK emulation on nnU-Net's networks (docs/architecture.md, "How the emulation is tested").

Perturbing masked *input* voxels proves nothing (input zeroing alone passes), so the emulation is checked by
(1) crop equivalence with the dense network, (2) noise injected at masked positions of every conv output,
(3) exact zeros at masked positions of every encoder output, (4) equality with the dense forward when
nothing is masked; each for PlainConvUNet and ResidualEncoderUNet, 2D, 3D and anisotropic 3D.
``test_checks_catch_broken_emulations`` shows that (1)-(3) fail for two plausible wrong emulations.
Boxes aligned only to the cell size leave partly visible windows at stages deeper than the mask stage; those
stages are checked against an independent sparse-convolution reference (``sparse_reference``).
"""
import copy
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.conv import _ConvNd

from dynamic_network_architectures.building_blocks.regularization import SqueezeExcite
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from nnunet_anatomask.pretraining.backbones.cnn import masked_forward
from nnunet_anatomask.pretraining.backbones.cnn.grid import cnn_grid, cumulative_strides
from nnunet_anatomask.pretraining.backbones.cnn.masked_forward import MaskedForwardError, MaskedInstanceNorm
from nnunet_anatomask.pretraining.backbones.cnn.model import MaskedReconstructionModel
from nnunet_anatomask.pretraining.grid import MaskGrid

PLAIN = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
RESENC = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
BOTTLENECK = "dynamic_network_architectures.building_blocks.residual.BottleneckD"
REQ_IMPORT = ["conv_op", "norm_op", "dropout_op", "nonlin"]


@dataclass(frozen=True)
class Geometry:
    """A tiny plans configuration and, per sample, one visible box aligned to the TOTAL stride."""
    features: tuple
    strides: tuple
    kernels: tuple
    patch: tuple
    channels: int
    box_size: tuple
    box_starts: tuple  # one start per sample (batch 2)
    cell_box_size: tuple = ()  # a box aligned only to the cell size (not the total stride), if the geometry
    cell_box_starts: tuple = ()  # has stages deeper than the mask stage


GEOMETRIES = {
    # total stride 32 > cell 16: the deepest stage sees the any-visible rule
    "2d": Geometry((4, 8, 16, 16, 16, 16), ((1, 1),) + ((2, 2),) * 5, ((3, 3),) * 6,
                   (64, 64), 2, (32, 64), ((32, 0), (0, 0)), (16, 48), ((16, 16), (32, 0))),
    "3d": Geometry((4, 8, 8, 16, 16), ((1, 1, 1),) + ((2, 2, 2),) * 4, ((3, 3, 3),) * 5,
                   (32, 32, 32), 1, (16, 32, 16), ((16, 0, 0), (0, 0, 16))),
    # cumulative strides (1,1,1) (1,2,2) (2,4,4) (4,8,8) (8,16,16) (8,32,32): cell (8,16,16), total (8,32,32)
    "3d-aniso": Geometry((4, 8, 8, 16, 16, 16),
                         ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2)),
                         ((1, 3, 3), (1, 3, 3)) + ((3, 3, 3),) * 4,
                         (16, 64, 64), 2, (8, 32, 64), ((8, 32, 0), (0, 0, 0)),
                         (8, 16, 48), ((0, 16, 16), (8, 48, 0))),
}
ARCHS = ("plain", "resenc")
CASES = [(arch, geo) for arch in ARCHS for geo in GEOMETRIES] + [("bottleneck", "2d")]
CASE_IDS = [f"{arch}-{geo}" for arch, geo in CASES]


def build_network(arch: str, geo: Geometry, norm: str = "InstanceNorm", nonlin: str = "torch.nn.LeakyReLU",
                  seed: int = 0) -> nn.Module:
    """The plans' network as nnU-Net builds it, num_classes = input channels, random norm affine params."""
    torch.manual_seed(seed)
    dim = len(geo.patch)
    n = len(geo.features)
    kwargs = dict(n_stages=n, features_per_stage=list(geo.features), conv_op=f"torch.nn.modules.conv.Conv{dim}d",
                  kernel_sizes=[list(k) for k in geo.kernels], strides=[list(s) for s in geo.strides],
                  n_conv_per_stage_decoder=[1] * (n - 1), conv_bias=True,
                  norm_op=None if norm is None else f"torch.nn.{norm}{dim}d",
                  norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None, dropout_op_kwargs=None,
                  nonlin=nonlin, nonlin_kwargs={"inplace": True} if "ReLU" in nonlin else {})
    req_import = list(REQ_IMPORT)
    if arch == "plain":
        kwargs["n_conv_per_stage"] = [2] * n
        arch_class = PLAIN
    else:
        kwargs["n_blocks_per_stage"] = [1, 2] + [1] * (n - 2)
        arch_class = RESENC
        if arch == "bottleneck":
            kwargs.update(block=BOTTLENECK, bottleneck_channels=[max(f // 2, 2) for f in geo.features])
            req_import.append("block")
    network = get_network_from_plans(arch_class, kwargs, req_import, geo.channels, geo.channels,
                                     allow_init=True, deep_supervision=False)
    with torch.no_grad():  # non-trivial affine params: a norm bias would leak into masked positions
        for module in network.modules():
            if isinstance(module, nn.modules.instancenorm._InstanceNorm):
                module.weight.normal_(1.0, 0.2)
                module.bias.normal_(0.0, 0.2)
    return network.eval()


def make(arch: str, geo_name: str, dtype=torch.float64, **kwargs):
    """(dense copy, MaskedReconstructionModel, grid, geometry) with identical weights."""
    geo = GEOMETRIES[geo_name]
    network = build_network(arch, geo, **kwargs).to(dtype)
    dense = copy.deepcopy(network)
    grid = cnn_grid(geo.patch, geo.strides)
    model = MaskedReconstructionModel(network, grid).to(dtype).eval()
    return dense, model, grid, geo


def images(geo: Geometry, dtype=torch.float64, seed: int = 1) -> torch.Tensor:
    """Batch 2 of random images, dtype as the model's parameters."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, geo.channels, *geo.patch, generator=gen, dtype=dtype)


def random_cell_mask(grid: MaskGrid, seed: int = 2) -> torch.Tensor:
    """~50 % masked, the first half of axis 0 fully masked (so deep stages have masked voxels too), and the
    last cell visible (so every stage has visible voxels)."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(2, *grid.cells_per_axis, generator=gen) < 0.5
    mask[:, : grid.cells_per_axis[0] // 2] = True
    mask[(slice(None),) + (-1,) * grid.ndim] = False
    return mask


def box_slices(start, size, stride) -> tuple:
    return tuple(slice(s // st, (s + n) // st) for s, n, st in zip(start, size, stride))


def box_cell_mask(grid: MaskGrid, geo: Geometry, cell_aligned: bool = False) -> torch.Tensor:
    size, starts = (geo.cell_box_size, geo.cell_box_starts) if cell_aligned else (geo.box_size, geo.box_starts)
    mask = torch.ones(2, *grid.cells_per_axis, dtype=torch.bool)
    for b, start in enumerate(starts):
        mask[(b,) + box_slices(start, size, grid.cell_size)] = False
    return mask


def hidden_at(grid: MaskGrid, cell_mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Bool [B, C, *spatial]: masked positions of the feature map t."""
    return (grid.visible_at(cell_mask, t.shape[2:]) == 0).expand_as(t)


# ==================================================================== the four checks (return errors)
@torch.no_grad()
def crop_errors(dense, model, grid, geo, cell_aligned: bool = False) -> list[float]:
    """Max |emulated - dense on the crop| inside the visible box, per encoder stage (cell-aligned boxes: the
    stages up to the mask stage, whose strides divide the box)."""
    size, starts = (geo.cell_box_size, geo.cell_box_starts) if cell_aligned else (geo.box_size, geo.box_starts)
    x = images(geo, dtype=model.mask_tokens[0].dtype)
    skips = model.encode(x, box_cell_mask(grid, geo, cell_aligned)).stages
    ones = (1,) * grid.ndim
    crops = torch.stack([x[b][(slice(None),) + box_slices(s, size, ones)] for b, s in enumerate(starts)])
    stage_strides = cumulative_strides(geo.strides)
    stages = model.mask_stage + 1 if cell_aligned else len(stage_strides)
    reference = encoder_stages(dense.encoder, crops, stages)  # a cell-aligned crop may be too small for the rest
    assert len(skips) == len(stage_strides) and len(reference) == stages
    errors = []
    for skip, ref, stride in list(zip(skips, reference, stage_strides))[:stages]:
        inside = torch.stack([skip[b][(slice(None),) + box_slices(s, size, stride)] for b, s in enumerate(starts)])
        assert inside.shape == ref.shape
        errors.append((inside - ref).abs().max().item())
    return errors


def encoder_stages(encoder: nn.Module, x: torch.Tensor, n: int) -> list[torch.Tensor]:
    """The outputs of the first n stages of a dna encoder (its forward, stopped early)."""
    x = encoder.stem(x) if getattr(encoder, "stem", None) is not None else x
    outputs = []
    for stage in encoder.stages[:n]:
        x = stage(x)
        outputs.append(x)
    return outputs


@torch.no_grad()
def sparse_reference(dense, x: torch.Tensor, voxel_visible: torch.Tensor) -> list[torch.Tensor]:
    """Encoder skips under sparse-convolution semantics, computed without our emulation: the dense network on the
    zero-filled input, every instance norm replaced (forward hook) by a norm over visible positions whose output
    is 0 elsewhere; a feature voxel is visible if ANY input voxel of its stride block is (max pooling)."""
    patch = x.shape[2:]
    pool = getattr(F, f"max_pool{len(patch)}d")

    def visibility(shape):
        stride = tuple(p // s for p, s in zip(patch, shape))
        return pool(voxel_visible, kernel_size=stride, stride=stride)

    def norm_over_visible(module, inputs, _out):
        h, vis = inputs[0], visibility(inputs[0].shape[2:])
        dims = tuple(range(2, h.ndim))
        count = vis.sum(dims, keepdim=True).clamp_min(1)
        mean = (h * vis).sum(dims, keepdim=True) / count
        var = ((h - mean).square() * vis).sum(dims, keepdim=True) / count
        shape = (1, -1) + (1,) * len(dims)
        return ((h - mean) / (var + module.eps).sqrt() * module.weight.view(shape) + module.bias.view(shape)) * vis

    norms = [m for m in dense.encoder.modules() if isinstance(m, nn.modules.instancenorm._InstanceNorm)]
    handles = [m.register_forward_hook(norm_over_visible) for m in norms]
    try:
        return dense.encoder(x * voxel_visible)
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def noise_errors(model, grid, geo) -> list[float]:
    """Max change at visible positions of every stage when every conv output (before the masked norm)
    and the input get large noise at their masked positions."""
    x, cell_mask = images(geo, dtype=model.mask_tokens[0].dtype), random_cell_mask(grid)
    clean = model.encode(x, cell_mask).stages
    gen = torch.Generator().manual_seed(3)
    calls = []

    def add_noise(_module, _inputs, out):
        calls.append(1)
        noise = torch.randn(out.shape, generator=gen, dtype=out.dtype)
        return out + 100.0 * noise * hidden_at(grid, cell_mask, out)

    convs = [m for m in model.network.encoder.modules() if isinstance(m, _ConvNd)]
    handles = [m.register_forward_hook(add_noise) for m in convs]
    try:
        noisy_x = x + 100.0 * torch.randn(x.shape, generator=gen, dtype=x.dtype) * grid.to_voxels(cell_mask)
        noisy = model.encode(noisy_x, cell_mask).stages
    finally:
        for h in handles:
            h.remove()
    assert len(calls) == len(convs)  # every conv got noise
    return [((a - b) * ~hidden_at(grid, cell_mask, a)).abs().max().item() for a, b in zip(noisy, clean)]


@torch.no_grad()
def masked_output_values(model, grid, geo) -> list[float]:
    """Max |value| at masked positions of every encoder module output except raw convs, and of every skip."""
    x, cell_mask = images(geo, dtype=model.mask_tokens[0].dtype), random_cell_mask(grid)
    found = []

    def record(module, _inputs, out):
        found.append(out[hidden_at(grid, cell_mask, out)].abs().max().item())

    encoder = model.network.encoder
    watched = [m for m in encoder.modules()
               if m is not encoder and (not isinstance(m, _ConvNd) or isinstance(m, masked_forward._MaskedConvMixin))]
    handles = [m.register_forward_hook(record) for m in watched]
    try:
        skips = model.encode(x, cell_mask).stages
    finally:
        for h in handles:
            h.remove()
    # every masked module ran (containers such as encoder.stages may be iterated rather than called)
    assert len(found) >= len(masked_forward.masked_modules(model.network))
    for skip in skips:  # sanity: masked AND visible positions at every stage, visible ones not all zero
        hidden = hidden_at(grid, cell_mask, skip)
        assert hidden.any() and (~hidden).any() and skip[~hidden].abs().max() > 0
        found.append(skip[hidden].abs().max().item())
    return found


# ==================================================================== (1) - (4)
@pytest.mark.parametrize("arch, geo", CASES, ids=CASE_IDS)
def test_crop_equivalence(arch, geo):
    dense, model, grid, g = make(arch, geo)
    errors = crop_errors(dense, model, grid, g)
    assert max(errors) < 1e-5, f"per-stage max error {errors}"


CELL_BOX_CASES = [(arch, geo) for arch, geo in CASES if GEOMETRIES[geo].cell_box_starts]


@pytest.mark.parametrize("arch, geo", CELL_BOX_CASES, ids=[f"{a}-{g}" for a, g in CELL_BOX_CASES])
def test_cell_aligned_boxes_crop_equivalence_and_sparse_reference(arch, geo):
    """Boxes aligned to the cell size only: stages up to the mask stage equal the dense network on the crop;
    every stage, the deeper ones with their partly visible windows included, equals the sparse reference at every
    position. Catches e.g. an all-visible rule (amin) instead of any-visible (amax) for the deeper stages."""
    dense, model, grid, g = make(arch, geo)
    assert any(max(s) > max(grid.cell_size) for s in cumulative_strides(g.strides)), "no stage deeper than the cells"
    assert max(crop_errors(dense, model, grid, g, cell_aligned=True)) < 1e-5
    x, cell_mask = images(g), box_cell_mask(grid, g, cell_aligned=True)
    with torch.no_grad():
        skips = model.encode(x, cell_mask).stages
    reference = sparse_reference(dense, x, (~grid.to_voxels(cell_mask)).to(x.dtype))
    partly_visible = 0
    for skip, ref, stride in zip(skips, reference, cumulative_strides(g.strides)):
        torch.testing.assert_close(skip, ref, rtol=0, atol=1e-8)
        if max(stride) > max(grid.cell_size):
            vis = grid.visible_at(cell_mask, skip.shape[2:])
            partly_visible += int((vis > 0).sum() > (~cell_mask).sum() // 2)  # more visible than whole cells give
    assert partly_visible > 0, "the box leaves no partly visible window at a deeper stage"


@pytest.mark.parametrize("arch, geo", CASES, ids=CASE_IDS)
def test_noise_at_masked_positions_does_not_reach_visible_outputs(arch, geo):
    # float32 is enough: with correct masking the visible computation is bit-identical with and without noise
    _, model, grid, g = make(arch, geo, dtype=torch.float32)
    errors = noise_errors(model, grid, g)
    assert max(errors) < 1e-6, f"per-stage max change {errors}"


@pytest.mark.parametrize("arch, geo", CASES, ids=CASE_IDS)
def test_masked_positions_are_exactly_zero(arch, geo):
    _, model, grid, g = make(arch, geo, dtype=torch.float32)
    values = masked_output_values(model, grid, g)
    assert all(v == 0 for v in values), f"non-zero masked values {[v for v in values if v != 0]}"


@pytest.mark.parametrize("arch, geo", CASES, ids=CASE_IDS)
def test_nothing_masked_equals_dense_and_no_mask_restores_it(arch, geo):
    # float64: the deepest instance norms see 2 x 2 voxels, where float32 round-off alone reaches 1e-5
    dense, model, grid, g = make(arch, geo, dtype=torch.float64)
    x = images(g, dtype=torch.float64)
    nothing = torch.zeros(2, *grid.cells_per_axis, dtype=torch.bool)
    with torch.no_grad():
        expected_skips = dense.encoder(x)
        expected = dense.decoder(expected_skips)  # = dense(x)
        torch.testing.assert_close(model(x, nothing), expected, rtol=0, atol=1e-5)
        cell_mask = random_cell_mask(grid)
        first_stage = model.encode(x, cell_mask).stages[0]  # the mask is in effect ...
        assert (first_stage[hidden_at(grid, cell_mask, first_stage)] == 0).all()
        torch.testing.assert_close(model(x, None), expected, rtol=0, atol=1e-5)  # a cell mask of None: dense
        assert all(m.visible is None for m in masked_forward.masked_modules(model.network))
        for skip, ref in zip(model.network.encoder(x), expected_skips):  # ... and gone again
            torch.testing.assert_close(skip, ref, rtol=0, atol=1e-5)


# ==================================================================== the checks can fail
_CORRECT_NORM = masked_forward._masked_instance_norm


def _norm_with_dense_statistics(x, visible, weight, bias, eps):
    y = nn.functional.instance_norm(x, None, None, weight, bias, True, 0.0, eps)
    return y * visible


def _norm_without_rezeroing(x, visible, weight, bias, eps):
    y = _CORRECT_NORM(x, visible, weight, bias, eps)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return y + bias.view(shape) * (1 - visible)  # masked positions keep the affine bias


@pytest.mark.parametrize("broken", [_norm_with_dense_statistics, _norm_without_rezeroing])
@pytest.mark.parametrize("arch", ARCHS)
def test_checks_catch_broken_emulations(arch, broken, monkeypatch):
    monkeypatch.setattr(masked_forward, "_masked_instance_norm", broken)
    dense, model, grid, g = make(arch, "2d")
    assert max(crop_errors(dense, model, grid, g)) > 1e-3
    if broken is _norm_with_dense_statistics:
        assert max(noise_errors(model, grid, g)) > 1e-3
    else:
        assert max(masked_output_values(model, grid, g)) > 0


def test_norm_less_convs_are_masked_explicitly():
    dense, model, grid, g = make("plain", "2d", norm=None)
    assert any(isinstance(m, masked_forward.MaskedConv2d) for m in model.network.encoder.modules())
    assert max(crop_errors(dense, model, grid, g)) < 1e-5
    assert all(v == 0 for v in masked_output_values(model, grid, g))


# ==================================================================== state dict, refusals, gradients
@pytest.mark.parametrize("arch, geo", CASES, ids=CASE_IDS)
def test_state_dict_keys_and_shapes_unchanged(arch, geo):
    reference = build_network(arch, GEOMETRIES[geo]).state_dict()
    _, model, _, _ = make(arch, geo, dtype=torch.float32)
    swapped = model.network.state_dict()
    assert list(swapped) == list(reference)
    for key, value in reference.items():
        assert swapped[key].shape == value.shape, key
        torch.testing.assert_close(swapped[key], value, rtol=0, atol=0)
    assert not any(k.startswith("network.") for k in model.extra_state_dict())


def test_swapped_modules_share_the_original_parameters():
    network = build_network("resenc", GEOMETRIES["3d"])
    params = {id(p) for p in network.parameters()}
    model = MaskedReconstructionModel(network, cnn_grid(GEOMETRIES["3d"].patch, GEOMETRIES["3d"].strides))
    assert {id(p) for p in model.network.parameters()} == params


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_norm_plans_are_refused(arch):
    geo = GEOMETRIES["2d"]
    network = build_network(arch, geo, norm="BatchNorm")
    with pytest.raises(MaskedForwardError, match="batch-norm plans are not supported by masked pretraining: "
                                                 "re-plan with instance norm"):
        MaskedReconstructionModel(network, cnn_grid(geo.patch, geo.strides))


def test_squeeze_excitation_is_refused():
    geo = GEOMETRIES["2d"]
    network = build_network("resenc", geo)
    block = network.encoder.stages[1].blocks[0]
    block.apply_se, block.squeeze_excitation = True, SqueezeExcite(8, nn.Conv2d, rd_ratio=1 / 2, rd_divisor=2)
    with pytest.raises(MaskedForwardError, match="squeeze-excitation"):
        MaskedReconstructionModel(network, cnn_grid(geo.patch, geo.strides))


def test_unknown_architecture_is_refused():
    grid = cnn_grid((64, 64), GEOMETRIES["2d"].strides)
    with pytest.raises(MaskedForwardError, match="PlainConvUNet / ResidualEncoderUNet-like"):
        MaskedReconstructionModel(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 1, 3)), grid)


def test_nonlinearity_that_moves_zero_is_refused():
    geo = GEOMETRIES["2d"]
    network = build_network("plain", geo, nonlin="torch.nn.Sigmoid")
    with pytest.raises(MaskedForwardError, match="Sigmoid .* maps 0 to a non-zero value"):
        MaskedReconstructionModel(network, cnn_grid(geo.patch, geo.strides))


def test_wrong_output_channels_and_deep_supervision_are_refused():
    geo = GEOMETRIES["2d"]
    grid = cnn_grid(geo.patch, geo.strides)
    network = build_network("plain", geo)
    network.decoder.deep_supervision = True
    with pytest.raises(MaskedForwardError, match="deep_supervision=False"):
        MaskedReconstructionModel(network, grid)
    network = build_network("plain", geo)
    network.decoder.num_classes = 3
    with pytest.raises(MaskedForwardError, match="num_classes"):
        MaskedReconstructionModel(network, grid)


def test_wrong_patch_size_is_refused():
    _, model, grid, g = make("plain", "2d", dtype=torch.float32)
    with pytest.raises(MaskedForwardError, match="patch size"):
        model(torch.zeros(2, g.channels, 32, 64), random_cell_mask(grid))


@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_reach_every_mask_token_and_the_network(arch):
    _, model, grid, g = make(arch, "2d", dtype=torch.float32)
    model.train()
    reconstruction = model(images(g, dtype=torch.float32), random_cell_mask(grid))
    assert reconstruction.shape == (2, g.channels, *g.patch)
    reconstruction.square().mean().backward()
    assert len(model.mask_tokens) == len(g.features)
    for stage, token in enumerate(model.mask_tokens):
        assert token.shape == (g.features[stage],)
        assert token.grad is not None and token.grad.abs().sum() > 0, f"no gradient at stage {stage}"
    assert all(p.grad is not None for p in model.network.encoder.parameters())


def test_mask_tokens_are_filled_in_and_round_trip():
    _, model, grid, g = make("plain", "2d", dtype=torch.float32)
    x, cell_mask = images(g, dtype=torch.float32), random_cell_mask(grid)
    tokens = model.extra_state_dict()
    assert sorted(tokens) == [f"mask_tokens.{i}" for i in range(len(g.features))]
    assert all(t.abs().max() <= 0.02 for t in tokens.values())  # SparK: trunc normal, std .02, +-.02
    with torch.no_grad():
        before = model(x, cell_mask)
        for token in model.mask_tokens:
            token.add_(1.0)
        assert not torch.allclose(model(x, cell_mask), before)  # the tokens enter the reconstruction
        model.load_extra_state_dict(tokens)
        torch.testing.assert_close(model(x, cell_mask), before, rtol=0, atol=0)


def test_masked_instance_norm_dense_and_half_precision():
    norm = nn.InstanceNorm3d(3, eps=1e-5, affine=True)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    masked = MaskedInstanceNorm.from_instance_norm(norm)
    assert masked.state_dict().keys() == norm.state_dict().keys()
    x = torch.randn(2, 3, 4, 6, 8)
    torch.testing.assert_close(masked(x), norm(x), rtol=0, atol=0)
    masked.visible = torch.ones(2, 1, 4, 6, 8)
    torch.testing.assert_close(masked(x), norm(x), rtol=1e-5, atol=1e-5)
    half = masked(x.bfloat16())
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), norm(x), rtol=0.05, atol=0.05)


def test_torch_compile_traces_the_masked_forward_without_graph_breaks():
    _, model, grid, g = make("resenc", "2d", dtype=torch.float32)
    x = images(g, dtype=torch.float32)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        for seed in (2, 5):
            cell_mask = random_cell_mask(grid, seed=seed)
            torch.testing.assert_close(compiled(x, cell_mask), model(x, cell_mask), rtol=0, atol=0)


def test_sparsify_is_idempotent():
    _, model, grid, g = make("resenc", "3d-aniso", dtype=torch.float32)
    swapped = masked_forward.masked_modules(model.network)
    model.encode(images(g, dtype=torch.float32), random_cell_mask(grid))  # the masked modules hold a mask
    masked_forward.sparsify_(model.network, grid)
    assert masked_forward.masked_modules(model.network) == swapped
    assert all(m.feature_shape is not None for m in swapped)


@pytest.mark.parametrize("arch", ["plain", "resenc"])
def test_features_on_request_come_from_the_same_forward(arch):
    """features=True: the same reconstruction, the masked skips (0 at masked positions, before mask tokens) and
    every decoder stage's output, the last one feeding the output layer; traced by torch.compile in one graph."""
    _, model, grid, g = make(arch, "3d-aniso", dtype=torch.float32)
    x, cell_mask = images(g, dtype=torch.float32), random_cell_mask(grid)
    with torch.no_grad():
        out = model(x, cell_mask, features=True)
        torch.testing.assert_close(out.reconstruction, model(x, cell_mask), rtol=0, atol=0)
        assert torch.equal(out.encoding.cells, out.encoding.stages[model.mask_stage])
        assert out.encoding.cells.shape[1:] == (model.cell_channels, *grid.cells_per_axis)
        for skip, expected in zip(out.encoding.stages, model.encode(x, cell_mask).stages):
            torch.testing.assert_close(skip, expected, rtol=0, atol=0)
            assert (skip[hidden_at(grid, cell_mask, skip)] == 0).all()
        decoder = model.network.decoder
        assert [f.shape[1] for f in out.decoder_features] == \
            [stage.output_channels for stage in decoder.stages]
        assert out.decoder_features[-1].shape[2:] == x.shape[2:]
        torch.testing.assert_close(decoder.seg_layers[-1](out.decoder_features[-1]), out.reconstruction)
        compiled = torch.compile(model, backend="eager", fullgraph=True)
        torch.testing.assert_close(compiled(x, cell_mask, features=True).decoder_features[0],
                                   out.decoder_features[0], rtol=0, atol=0)
