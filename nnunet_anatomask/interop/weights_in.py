"""Theirs in: a pretrained checkpoint of either format into one of our networks, through the one transfer library
(``transfer/``: parts, adapting rules, report; docs/recipes.md). What is nnssl's lives here (docs/interop.md):

- **nnssl** (a checkpoint with ``nnssl_adaptation_plan`` that is not ours, e.g. OpenMind's): its plan is checked,
  and its tensors are renamed to the network's own names: the plan says where stem, encoder and position
  embedding lie in the checkpoint (``key_to_stem``, ``key_to_encoder``, ``key_to_lpe``), the network where they lie
  in itself (dynamic-network-architectures' names). Stem and encoder then load as nnU-Net main's
  ``PretrainedTrainer.load_pretrained_weights`` loads them: decoder and output layer fresh, a 1-channel input
  projection spread over the target's channels, a position embedding interpolated to the target's token grid
  (``transfer/adapt.py``), everything else strictly (``check_complete``).
- **ours** (a checkpoint of nnunet-anatomask): every tensor of the same name and shape; strictly, every tensor but
  those that follow the class count must be there.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from nnunet_anatomask.checkpoint_io import CheckpointError
from nnunet_anatomask.interop.adaptation_plan import ADAPTATION_PLAN_KEY, PLAN_FIELDS, first_configuration
from nnunet_anatomask.transfer.load import check_complete, load_state, transfer_state
from nnunet_anatomask.transfer.parts import DECODER, follows_classes, part_of, under
from nnunet_anatomask.transfer.report import TransferReport


def is_foreign_nnssl(ckpt: dict) -> bool:
    """An nnssl-format checkpoint that is not one of ours (ours carry the plan too, and their scheme)."""
    return ADAPTATION_PLAN_KEY in ckpt and "scheme" not in ckpt


def check_plan(ckpt: dict, source: str) -> dict:
    """The checkpoint's adaptation plan, every field nnU-Net main reads present, its stem and encoder keys naming
    tensors of the checkpoint; else one error naming the field and what the checkpoint holds."""
    plan = ckpt.get(ADAPTATION_PLAN_KEY)
    if not isinstance(plan, dict):
        raise CheckpointError(f"{source} has no nnssl adaptation plan ('{ADAPTATION_PLAN_KEY}'). Fix: use a "
                              f"checkpoint written by nnssl or by a current nnunet-anatomask.")
    missing = [k for k in PLAN_FIELDS if k not in plan and k != "key_to_lpe"]
    if missing:
        raise CheckpointError(f"{source}: its adaptation plan lacks {', '.join(missing)} (it has "
                              f"{', '.join(sorted(plan))}). Fix: use a checkpoint whose plan follows nnssl's "
                              f"AdaptationPlan, or add the missing fields.")
    try:
        _, entry = first_configuration(plan)
        entry["patch_size"], entry["spacing"]
    except (KeyError, TypeError, StopIteration, AttributeError):
        raise CheckpointError(f"{source}: its adaptation plan's pretrain_plan.configurations has no configuration "
                              f"with 'spacing' and 'patch_size'. Fix: use a checkpoint whose plan follows nnssl's "
                              f"Plan.") from None
    weights = ckpt.get("network_weights") or {}
    for field_name in ("key_to_encoder", "key_to_stem"):
        if not any(under(k, plan[field_name]) for k in weights):
            tops = sorted({".".join(k.split(".")[:3]) for k in weights})[:6]
            raise CheckpointError(
                f"{source}: its adaptation plan's {field_name} '{plan[field_name]}' names no tensor of the "
                f"checkpoint (its tensors begin with {', '.join(tops)}). Fix: correct {field_name} in the plan "
                f"('nnssl_adaptation_plan' in the checkpoint) to the prefix of those tensors.")
    return plan


def network_names(weights: dict, plan: dict, network: nn.Module) -> dict:
    """The checkpoint's stem, encoder and position-embedding tensors under the network's own names (the stem
    first: in a PlainConvUNet it lies inside the encoder); tensors outside them are left out."""
    prefixes = [(plan["key_to_stem"], network.key_to_stem), (plan["key_to_encoder"], network.key_to_encoder),
                (plan.get("key_to_lpe"), getattr(network, "key_to_lpe", None))]
    renamed = {}
    for key, tensor in weights.items():
        for theirs, ours in prefixes:
            if theirs and ours and under(key, theirs):
                renamed[ours + key[len(theirs):]] = tensor
                break
    return renamed


def check_channels(plan: dict, channels: int, mode: str, source: str) -> None:
    """Strict, as nnU-Net main: a checkpoint pretrained on M > 1 channels fits only M channels (1 channel is
    spread over any number); ``adapt`` spreads any M (transfer/adapt.py)."""
    pretrained = int(plan["pretrain_num_input_channels"])
    if mode == "strict" and pretrained not in (1, channels):
        raise CheckpointError(f"{source} was pretrained on {pretrained} input channels and this network has "
                              f"{channels}; only a 1-channel checkpoint is spread over several channels. Fix: "
                              f"fine-tune on data with {pretrained} channels.")


def transfer_plan(ckpt: dict, network: nn.Module, patch_size: Sequence[int], source: str, fix: str,
                  mode: str = "strict", loading: str = "all", with_output: bool = False) -> tuple[dict, TransferReport]:
    """What of ``ckpt`` (either format) goes into ``network``, and the report; nothing is loaded yet. Strict, a
    misfit raises with ``fix`` as its last sentence (e.g. the plan_like_pretrained command). An nnssl checkpoint
    always loads stem and encoder only; ``loading`` and ``with_output`` are for ours (transfer/load.py)."""
    if not is_foreign_nnssl(ckpt):
        state, report = transfer_state(ckpt["network_weights"], network, mode=mode, loading=loading, source=source,
                                       source_patch=ckpt.get("patch_size"), target_patch=patch_size,
                                       with_output=with_output)
        if mode == "strict":
            check_complete(report, lambda key: follows_classes(network, key), fix)
        return state, report
    plan = check_plan(ckpt, source)
    in_proj = [f"{key}.weight" for key in network.keys_to_in_proj]
    check_channels(plan, network.get_parameter(in_proj[0]).shape[1], mode, source)
    _, pretraining = first_configuration(plan)
    state, report = transfer_state(
        network_names(ckpt["network_weights"], plan, network), network, mode=mode, loading="encoder", source=source,
        source_patch=pretraining["patch_size"], target_patch=patch_size,
        always_adapted=[*in_proj, *filter(None, [getattr(network, "key_to_lpe", None)])])
    if mode == "strict":
        check_complete(report, lambda key: part_of(network, key) == DECODER, fix, unused_allowed=False)
    return state, report


def transfer(ckpt: dict, network: nn.Module, patch_size: Sequence[int], source: str, fix: str,
             mode: str = "strict", loading: str = "all", with_output: bool = False) -> TransferReport:
    """``transfer_plan``, loaded into ``network`` (a plain network, on any device); returns the report."""
    state, report = transfer_plan(ckpt, network, patch_size, source, fix, mode, loading, with_output)
    load_state(network, state)
    return report


def pretraining_notes(ckpt: dict, spacing: Sequence[float], normalization: Sequence[str]) -> list[str]:
    """Where an nnssl checkpoint's pretraining (its plan's first configuration) differs from this configuration in
    spacing or normalisation: one note each (the plans route, nnUNetv2_plan_like_pretrained, matches them)."""
    _, pretraining = first_configuration(ckpt[ADAPTATION_PLAN_KEY])
    theirs_spacing, theirs_norm = pretraining.get("spacing"), pretraining.get("normalization_schemes")
    notes = []
    if theirs_spacing is not None and (len(theirs_spacing) != len(spacing) or any(
            abs(float(a) - float(b)) > 1e-3 for a, b in zip(theirs_spacing, spacing))):
        notes.append(f"pretrained at spacing {list(theirs_spacing)}, this configuration has {list(spacing)}")
    if theirs_norm is not None and list(theirs_norm) != list(normalization):
        notes.append(f"pretrained with normalisation {list(theirs_norm)}, this configuration has "
                     f"{list(normalization)}")
    return notes
