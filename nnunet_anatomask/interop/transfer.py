"""Theirs in: a pretrained checkpoint's weights into one of our networks, with a report of what transferred.

Two formats (docs/interop.md):

- **nnssl** (a checkpoint with ``nnssl_adaptation_plan`` that is not ours, e.g. OpenMind's): the plan names where
  stem and encoder lie in the checkpoint (``key_to_stem``, ``key_to_encoder``), the network names where they lie in
  itself (dynamic-network-architectures' ``key_to_stem`` / ``key_to_encoder``); the checkpoint's tensors under
  those keys are loaded into the network's submodules strictly, as nnU-Net main's
  ``PretrainedTrainer.load_pretrained_weights`` does. Decoder and output layer start fresh: stem and encoder are
  what an adaptation plan promises. Two adaptations, as nnU-Net main: weights pretrained on one input channel have
  their input projection repeated over the target's channels and divided by their number; a learned position
  embedding (Primus) is interpolated trilinearly to the target's token grid.
- **ours** (a stage-1 checkpoint of nnunet-anatomask): every tensor of the same name and shape, as the stage-2
  hand-over; every tensor but the output layers must be there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_anatomask.checkpoint_io import CheckpointError
from nnunet_anatomask.interop.adaptation_plan import ADAPTATION_PLAN_KEY, PLAN_FIELDS, first_configuration

# Tensors whose shape follows the number of output channels: never required from a checkpoint (CNN seg_layers;
# Primus' patch decoder, whose widths all depend on it).
OUTPUT_LAYERS = (".seg_layers.", "up_projection.")


@dataclass
class TransferReport:
    """Unique tensors of the target network (aliases such as the decoder's reference to the encoder counted once)
    that came from the checkpoint, per part, and how many kept their fresh initialisation."""

    source: str
    stem: int = 0
    encoder: int = 0
    decoder: int = 0
    fresh: int = 0
    adapted: list[str] = field(default_factory=list)
    fresh_keys: list[str] = field(default_factory=list, repr=False)

    @property
    def transferred(self) -> int:
        return self.stem + self.encoder + self.decoder

    def line(self) -> str:
        extra = "".join(f"; {a}" for a in self.adapted)
        return (f"{self.source}: {self.transferred} tensors transferred (stem {self.stem}, encoder {self.encoder}, "
                f"decoder {self.decoder}), {self.fresh} left at their fresh start{extra}")


def is_foreign_nnssl(ckpt: dict) -> bool:
    """An nnssl-format checkpoint that is not one of ours (ours carry the plan too, and their scheme)."""
    return ADAPTATION_PLAN_KEY in ckpt and "scheme" not in ckpt


def _under(key: str, prefix: Optional[str]) -> bool:
    return bool(prefix) and (key == prefix or key.startswith(prefix + "."))


def _strip(key: str, prefix: str) -> str:
    return key[len(prefix) + 1:] if key != prefix else ""


def parts(network: nn.Module) -> dict[str, str]:
    """{state-dict key: 'stem' | 'encoder' | 'decoder'} for each unique tensor (the first key of an alias)."""
    seen, found = set(), {}
    for key, tensor in network.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        if _under(key, network.key_to_stem):
            found[key] = "stem"
        elif _under(key, network.key_to_encoder) or _under(key, getattr(network, "key_to_lpe", None)):
            found[key] = "encoder"
        else:
            found[key] = "decoder"
    return found


def report(network: nn.Module, loaded: set[str], source: str, adapted: Sequence[str] = ()) -> TransferReport:
    """Counts per part of ``network`` for the keys in ``loaded``."""
    result = TransferReport(source, adapted=list(adapted))
    for key, part in parts(network).items():
        if key in loaded:
            setattr(result, part, getattr(result, part) + 1)
        else:
            result.fresh += 1
            result.fresh_keys.append(key)
    return result


# --- the adaptation plan of a foreign checkpoint ------------------------------------------------------------
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
        if not any(_under(k, plan[field_name]) for k in weights):
            tops = sorted({".".join(k.split(".")[:3]) for k in weights})[:6]
            raise CheckpointError(
                f"{source}: its adaptation plan's {field_name} '{plan[field_name]}' names no tensor of the "
                f"checkpoint (its tensors begin with {', '.join(tops)}). Fix: correct {field_name} in the plan "
                f"('nnssl_adaptation_plan' in the checkpoint) to the prefix of those tensors.")
    return plan


def _repeat_input_projection(weights: dict, plan: dict, channels: int, adapted: list[str]) -> dict:
    """Weights pretrained on fewer input channels than the target has: one channel is repeated over the target's
    channels and divided by their number (nnU-Net main's rule); other counts cannot be mapped."""
    pretrained = int(plan["pretrain_num_input_channels"])
    if pretrained == channels:
        return weights
    if pretrained != 1:
        raise CheckpointError(f"the checkpoint was pretrained on {pretrained} input channels and this network has "
                              f"{channels}; only a 1-channel checkpoint can be spread over several channels. Fix: "
                              f"fine-tune on data with {pretrained} channels.")
    weights = dict(weights)
    for key in plan["keys_to_in_proj"]:
        name = f"{key}.weight"
        if name in weights:
            weights[name] = weights[name].repeat(1, channels, *[1] * (weights[name].ndim - 2)) / channels
    adapted.append(f"input projection repeated over {channels} channels")
    return weights


def _resize_position_embedding(weights: dict, plan: dict, network: nn.Module, patch_size: Sequence[int],
                               adapted: list[str]) -> dict:
    """A learned position embedding [1, N, C] of another token grid, interpolated trilinearly to the target's
    grid (tokens in Primus' order, the conv output flattened axis by axis)."""
    source_key, target_key = plan.get("key_to_lpe"), getattr(network, "key_to_lpe", None)
    if not source_key or not target_key or source_key not in weights:
        return weights
    source, target = weights[source_key], network.get_parameter(target_key)
    if source.shape == target.shape:
        return weights
    embed = network.get_submodule(network.key_to_stem).proj.kernel_size
    _, entry = first_configuration(plan)
    old = [int(p) // int(e) for p, e in zip(entry["patch_size"], embed)]
    new = [int(p) // int(e) for p, e in zip(patch_size, embed)]
    grid = source.reshape(1, *old, source.shape[-1]).permute(0, 4, 1, 2, 3).float()
    resized = F.interpolate(grid, size=new, mode="trilinear", align_corners=False)
    weights = dict(weights)
    weights[source_key] = resized.permute(0, 2, 3, 4, 1).reshape(1, -1, source.shape[-1]).to(source.dtype)
    adapted.append(f"position embedding interpolated from a {old} to a {new} token grid")
    return weights


def _load_part(network: nn.Module, target_prefix: str, weights: dict, source_prefix: str, skip: Optional[str],
               source: str, fix: str) -> set[str]:
    """Load the checkpoint's tensors under ``source_prefix`` into the submodule ``target_prefix`` (strict, but
    for the keys under ``skip``); returns the full keys of the network that were loaded."""
    module = network.get_submodule(target_prefix)
    state = {_strip(k, source_prefix): v for k, v in weights.items() if _under(k, source_prefix)}
    if skip:
        skipped = _strip(skip, target_prefix) if _under(skip, target_prefix) else None
        state = {k: v for k, v in state.items() if not (skipped and _under(k, skipped))}
    own = {k: v for k, v in module.state_dict().items()
           if not (skip and _under(f"{target_prefix}.{k}", skip))}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)} here" for k in own
             if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        details = "; ".join(filter(None, [
            f"missing in the checkpoint: {', '.join(missing[:3])}" if missing else "",
            f"not in this network: {', '.join(unexpected[:3])}" if unexpected else "",
            f"other shape: {', '.join(wrong[:3])}" if wrong else ""]))
        raise CheckpointError(f"{source}: its '{source_prefix}' does not fit this network's '{target_prefix}' "
                              f"({details}). {fix}")
    module.load_state_dict(state, strict=False)
    return {f"{target_prefix}.{k}" for k in state}


def transfer_nnssl(ckpt: dict, network: nn.Module, patch_size: Sequence[int], source: str,
                   fix: str) -> TransferReport:
    """Stem and encoder (with its position embedding) of an nnssl-format checkpoint into ``network``; ``fix`` is
    the sentence that ends a mismatch message (e.g. the plan_like_pretrained command)."""
    plan = check_plan(ckpt, source)
    adapted: list[str] = []
    channels = network.get_submodule(network.keys_to_in_proj[0]).weight.shape[1]
    weights = _repeat_input_projection(dict(ckpt["network_weights"]), plan, channels, adapted)
    weights = _resize_position_embedding(weights, plan, network, patch_size, adapted)
    stem_inside = _under(network.key_to_stem, network.key_to_encoder)  # PlainConvUNet: stage 0 is the stem
    loaded = _load_part(network, network.key_to_encoder, weights, plan["key_to_encoder"],
                        None if stem_inside else network.key_to_stem, source, fix)
    if not stem_inside:
        loaded |= _load_part(network, network.key_to_stem, weights, plan["key_to_stem"], None, source, fix)
    lpe = getattr(network, "key_to_lpe", None)
    if lpe and not _under(lpe, network.key_to_encoder) and plan.get("key_to_lpe") in weights:
        network.get_parameter(lpe).data.copy_(weights[plan["key_to_lpe"]])
        loaded.add(lpe)
    return report(network, loaded, source, adapted)


def transfer_ours(weights: dict, network: nn.Module, source: str, fix: str) -> TransferReport:
    """Every tensor of the same name and shape; every tensor but the output layers must be there."""
    own = network.state_dict()
    required = [k for k in own if not any(s in k or k.startswith(s) for s in OUTPUT_LAYERS)]
    missing = [k for k in required if k not in weights]
    wrong = [k for k in required if k in weights and weights[k].shape != own[k].shape]
    if missing or wrong:
        key = (missing or wrong)[0]
        shape = f"shape {tuple(weights[key].shape)} there" if key in weights else "missing there"
        raise CheckpointError(f"{source} does not fit this network: '{key}' has shape {tuple(own[key].shape)} here, "
                              f"{shape} ({len(missing)} missing, {len(wrong)} of another shape). {fix}")
    moved = {k: v for k, v in weights.items() if k in own and v.shape == own[k].shape}
    network.load_state_dict(moved, strict=False)
    return report(network, set(moved), source)


def transfer(ckpt: dict, network: nn.Module, patch_size: Sequence[int], source: str, fix: str) -> TransferReport:
    """Load a checkpoint of either format into ``network`` (a plain network, on any device); returns the report."""
    with torch.no_grad():
        if is_foreign_nnssl(ckpt):
            return transfer_nnssl(ckpt, network, patch_size, source, fix)
        return transfer_ours(ckpt["network_weights"], network, source, fix)
