"""Checkpoints that follow nnssl's schema (MIC-DKFZ/nnssl: AbstractTrainer.save_checkpoint writes network_weights,
optimizer_state, grad_scaler_state, logging, _best_ema, current_epoch, init_args, trainer_name and
nnssl_adaptation_plan, the serialised AdaptationPlan of adaptation_planning/adaptation_plan.py).

Two tiny ones: a ResEnc-shaped CNN (a dynamic ResidualEncoderUNet plan) and a Primus-S (the preset at a 64^3
pretraining patch, so that a 32^3 target interpolates its position embedding). Like a checkpoint of a pretraining
wrapper, their tensors sit under other key names than the networks' own ('model.encoder.stem...' for the CNN):
only the adaptation plan says where stem and encoder are. They hold stem and encoder only, as nnssl promises, with
random values (not any network's initialisation, so a transferred tensor is told apart from a fresh one).
"""
import copy

import torch

from nnunet_anatomask.interop.architectures import build

RESENC_KWARGS = {
    "n_stages": 4, "features_per_stage": [8, 16, 32, 32], "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[3, 3, 3]] * 4, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
    "n_blocks_per_stage": [1, 1, 2, 2], "n_conv_per_stage_decoder": [1, 1, 1], "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
    "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
}
PREFIX = "model."  # where the fixture's wrapper keeps the network


def pretrain_plan(patch: list) -> dict:
    """nnssl's serialised Plan with one configuration (nnssl's 1 mm isotropic style)."""
    return {"dataset_name": "Dataset745_OpenMindLike", "plans_name": "nnsslPlans",
            "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "image_reader_writer": "NibabelReaderWriter",
            "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "experiment_planner_used": "",
            "configurations": {"onemmiso": {
                "data_identifier": "nnsslPlans_onemmiso", "preprocessor_name": "DefaultPreprocessor",
                "spacing_style": "onemmiso", "normalization_schemes": ["ZScoreNormalization"],
                "use_mask_for_norm": [False], "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
                "resampling_fn_mask": "resample_data_or_seg_to_shape",
                "resampling_fn_mask_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
                "spacing": [1.0, 1.0, 1.0], "patch_size": patch}}}


def _random(shape, generator) -> torch.Tensor:
    """He-scaled normal values for weights (std sqrt(2 / fan_in), the scale of trained conv weights), 0.05 for
    vectors (biases, norms)."""
    fan_in = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 0
    return torch.randn(shape, generator=generator) * ((2 / fan_in) ** 0.5 if fan_in else 0.05)


def _random_like(state: dict, seed: int) -> dict:
    """Random values of the same shapes; names of one tensor (a conv listed as '.conv' and '.all_modules.0') keep
    one value, as in a real checkpoint."""
    generator, drawn = torch.Generator().manual_seed(seed), {}
    for v in state.values():
        if v.data_ptr() not in drawn:
            drawn[v.data_ptr()] = _random(v.shape, generator).to(v.dtype) if v.is_floating_point() else v.clone()
    return {k: drawn[v.data_ptr()] for k, v in state.items()}


def _checkpoint(weights: dict, plan: dict) -> dict:
    return {"network_weights": weights, "optimizer_state": {}, "grad_scaler_state": None,
            "logging": {"train_losses": [0.5]}, "_best_ema": None, "current_epoch": 1000,
            "init_args": {"configuration_name": "onemmiso", "fold": "all"}, "trainer_name": "FixtureMAETrainer",
            "nnssl_adaptation_plan": plan,
            "citations": [{"type": "Pre-training method", "name": "Fixture MAE", "apa_citations": ["Fixture (2026)."]}]}


def resenc_checkpoint() -> dict:
    """A 1-channel ResEnc pretrained at 32^3: stem and encoder under 'model.encoder.*'."""
    arch = {"arch_class_name": "ResidualEncoderUNet", "arch_kwargs": copy.deepcopy(RESENC_KWARGS),
            "arch_kwargs_requiring_import": ["conv_op", "norm_op", "nonlin"]}
    network = build(arch, 1, 1, [32, 32, 32])
    encoder = {k: v for k, v in network.state_dict().items() if k.startswith("encoder.")}
    plan = {"architecture_plans": arch, "pretrain_plan": pretrain_plan([32, 32, 32]),
            "pretrain_num_input_channels": 1, "recommended_downstream_patchsize": [32, 32, 32],
            "key_to_encoder": PREFIX + "encoder.stages", "key_to_stem": PREFIX + "encoder.stem",
            "keys_to_in_proj": [PREFIX + "encoder.stem.convs.0.conv", PREFIX + "encoder.stem.convs.0.all_modules.0"],
            "key_to_lpe": None}
    return _checkpoint({PREFIX + k: v for k, v in _random_like(encoder, 0).items()}, plan)


def primus_checkpoint() -> dict:
    """A 1-channel Primus-S pretrained at 64^3 (8^3 tokens): down_projection and eva (nnssl's EvaMAE names)."""
    arch = {"arch_class_name": "PrimusS", "arch_kwargs": None, "arch_kwargs_requiring_import": None}
    network = build(arch, 1, 1, [64, 64, 64])
    kept = {k: v for k, v in network.state_dict().items() if k.startswith(("down_projection.", "eva."))}
    plan = {"architecture_plans": arch, "pretrain_plan": pretrain_plan([64, 64, 64]),
            "pretrain_num_input_channels": 1, "recommended_downstream_patchsize": [32, 32, 32],
            "key_to_encoder": "eva", "key_to_stem": "down_projection", "keys_to_in_proj": ["down_projection.proj"],
            "key_to_lpe": "eva.pos_embed"}
    return _checkpoint(_random_like(kept, 1), plan)


def with_wrong_key(ckpt: dict) -> dict:
    """The same checkpoint whose plan names a wrong encoder key (a typo: 'stage' for 'stages')."""
    bad = copy.deepcopy(ckpt)
    bad["nnssl_adaptation_plan"]["key_to_encoder"] = bad["nnssl_adaptation_plan"]["key_to_encoder"][:-1]
    return bad


def save(ckpt: dict, path) -> str:
    torch.save(ckpt, str(path))
    return str(path)
