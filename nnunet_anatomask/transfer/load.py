"""Checkpoint weights + target network + mode -> the state to load + the transfer report (docs/recipes.md).

Two modes. ``strict`` (the default) takes every tensor of the same name and shape, as nnU-Net's
``load_pretrained_weights`` and our stage-2 hand-over do; the callers check beforehand that nothing else differs and
keep their messages. ``adapt`` (opt-in, for weights from other plans) also adapts what ``adapt.py`` can: the input
convolution across channel counts, convolution kernels of another size, Primus' position embedding across token
grids; with another number of CNN stages, encoder stages load by index and decoder stages by the encoder stage
whose skip they take (ours), so the shared resolutions load and the rest start fresh. Loading ``encoder`` (nnssl's
choice) leaves the whole decoder fresh; ``all`` (ours) loads it too. The CNN's ``seg_layers`` do not load (nnU-Net),
but for stage 1 continued from a stage-1 checkpoint (``with_output``: there they are the same reconstruction head).
``always_adapted`` names tensors adapted in strict mode too: nnU-Net main adapts an nnssl checkpoint's input
projection and position embedding whatever else it checks (docs/interop.md). ``check_complete`` turns strict into
"every tensor that should load did", with the first differences and the caller's fix.
"""
from __future__ import annotations

import re
from typing import Callable, Collection, Optional, Sequence

import torch
from torch import nn

from nnunet_anatomask.checkpoint_io import CheckpointError
from nnunet_anatomask.pretraining.backbones.base import unwrapped as plain  # the network inside DDP/compile
from nnunet_anatomask.transfer import adapt
from nnunet_anatomask.transfer.parts import DECODER, STEM, aliases, is_output, part_of
from nnunet_anatomask.transfer.report import ADAPTED, AS_IS, FRESH, TransferReport


class TransferError(CheckpointError, ValueError):
    """Weights that cannot move into this network; the message names the difference and the fix."""


MODES = ("strict", "adapt")
LOADING = ("all", "encoder")
NEVER_LOADED = (".seg_layers.",)  # nnU-Net's load_pretrained_weights skips these too
ENCODER_ONLY = "decoder: loading the encoder only"  # the reasons for a fresh tensor that are a choice, not a misfit
OUTPUT_NOT_LOADED = "output layer: never transferred"
NOT_IN_CHECKPOINT = "not in the checkpoint"
_STAGE = re.compile(r"^(encoder\.stages|decoder\.stages|decoder\.transpconvs|decoder\.seg_layers)\.(\d+)(\.|$)")


def stage_count(keys) -> int:
    """Number of CNN encoder stages named in ``keys`` (0 for networks without ``encoder.stages``)."""
    found = [int(m.group(2)) for m in map(_STAGE.match, keys) if m and m.group(1) == "encoder.stages"]
    return max(found) + 1 if found else 0


def source_key(key: str, offset: int) -> Optional[str]:
    """The checkpoint's name for the target's ``key`` when the checkpoint has ``offset`` more stages: decoder stage j
    takes the skip of encoder stage n - 2 - j, so the same skip is the checkpoint's decoder stage j + offset."""
    m = _STAGE.match(key)
    if not m or not m.group(1).startswith("decoder") or offset == 0:
        return key
    index = int(m.group(2)) + offset
    return None if index < 0 else f"{m.group(1)}.{index}{key[m.end(2):]}"


def _token_grid(network: nn.Module, patch: Optional[Sequence[int]]) -> Optional[list[int]]:
    embed = getattr(getattr(network, "down_projection", None), "proj", None)
    if patch is None or embed is None:
        return None
    return [int(p) // int(k) for p, k in zip(patch, embed.kernel_size)]


def adapt_tensor(network: nn.Module, key: str, weight: torch.Tensor, target: torch.Tensor,
                 source_patch: Optional[Sequence[int]], target_patch: Optional[Sequence[int]]) -> tuple:
    """(adapted tensor, what was done) or (None, why not) for one tensor whose shape differs."""
    if key == getattr(network, "key_to_lpe", None) and weight.shape[-1] == target.shape[-1]:
        old, new = _token_grid(network, source_patch), _token_grid(network, target_patch)
        if old is None or new is None or weight.shape[1] != int(torch.tensor(old).prod()):
            return None, "position embedding of an unknown token grid (the checkpoint names no patch size)"
        return adapt.resize_position_embedding(weight, old, new), f"position embedding, token grid {old} -> {new}: " \
                                                                  f"interpolated trilinearly"
    module = network.get_submodule(key.rsplit(".", 1)[0]) if "." in key else network
    if not (isinstance(module, nn.modules.conv._ConvNd) and key.endswith(".weight") and weight.ndim == target.ndim):
        return None, f"shape {tuple(weight.shape)} there, {tuple(target.shape)} here"
    if module.transposed:
        if weight.shape[:2] != target.shape[:2]:
            return None, f"width {tuple(weight.shape[:2])} there, {tuple(target.shape[:2])} here"
        return None, "transposed convolution of another stride (upsampling factor)"
    done = []
    if weight.shape[1] != target.shape[1]:
        if part_of(network, key) != STEM or weight.shape[0] != target.shape[0]:
            return None, f"width {tuple(weight.shape[:2])} there, {tuple(target.shape[:2])} here"
        done.append(f"input channels {weight.shape[1]} -> {target.shape[1]}: summed and spread evenly")
        weight = adapt.spread_channels(weight, target.shape[1])
    if weight.shape[0] != target.shape[0]:
        return None, f"width {weight.shape[0]} there, {target.shape[0]} here"
    if weight.shape[2:] != target.shape[2:]:
        old = tuple(weight.shape[2:])
        weight = adapt.resize_kernel(weight, target.shape[2:])
        how = "/".join(sorted({"zero-padded" if n > o else "averaged" if n == 1 else "centre-cropped"
                               for o, n in zip(old, target.shape[2:]) if o != n}))
        done.append(f"kernel {old} -> {tuple(target.shape[2:])}: {how}")
    return weight, "; ".join(done)


def check_dimensions(weights: dict, own: dict, source: str) -> None:
    """The first convolution both have must have as many spatial axes in both (2D and 3D weights do not mix)."""
    for key, tensor in own.items():
        if tensor.ndim >= 3 and key in weights and weights[key].ndim >= 3:
            if weights[key].ndim != tensor.ndim:
                raise TransferError(
                    f"{source} holds {weights[key].ndim - 2}D convolutions ('{key}' {tuple(weights[key].shape)}), "
                    f"this network {tensor.ndim - 2}D ones ({tuple(tensor.shape)}). Fix: fine-tune a configuration "
                    f"of the same dimensionality (2d with 2d, 3d_fullres/3d_lowres with 3d).")
            return


def transfer_state(weights: dict, network: nn.Module, *, mode: str = "strict", loading: str = "all",
                   source: str = "checkpoint", source_patch: Optional[Sequence[int]] = None,
                   target_patch: Optional[Sequence[int]] = None, with_output: bool = False,
                   always_adapted: Collection[str] = ()) -> tuple[dict, TransferReport]:
    """The tensors to load into ``network`` (every name of each, aliases included) and the report of every tensor
    of the network. Nothing is loaded here: ``load_state(network, state)`` does that. ``with_output``: load the
    ``seg_layers`` too where their shape matches; ``always_adapted``: first keys adapted in strict mode too."""
    if mode not in MODES or loading not in LOADING:
        raise ValueError(f"mode {mode!r} / loading {loading!r}: expected one of {MODES} / {LOADING}")
    report = TransferReport(source, mode, loading)
    own = network.state_dict()
    check_dimensions(weights, own, source)
    names = aliases(network)
    offset = stage_count(weights) - stage_count(own) if mode == "adapt" and stage_count(own) else 0
    if offset:
        report.notes.append(f"the checkpoint has {stage_count(weights)} stages, this network {stage_count(own)}: "
                            f"decoder stages matched by the encoder stage whose skip they take")
    state, used = {}, set()
    for key, first in names.items():
        if key != first:
            continue
        part, target = part_of(network, key), own[key]
        src = source_key(key, offset)
        if loading == "encoder" and part == DECODER:
            report.add(key, part, FRESH, ENCODER_ONLY)
        elif not with_output and any(s in key for s in NEVER_LOADED):
            report.add(key, part, FRESH, OUTPUT_NOT_LOADED)
        elif src is None or src not in weights:
            report.add(key, part, FRESH, NOT_IN_CHECKPOINT)
        elif tuple(weights[src].shape) == tuple(target.shape):
            state[key], _ = weights[src], used.add(src)
            report.add(key, part, AS_IS)
        elif mode == "adapt" or key in always_adapted:
            tensor, note = adapt_tensor(network, key, weights[src], target, source_patch, target_patch)
            used.add(src)
            if tensor is None:
                report.add(key, part, FRESH, note)
            else:
                state[key] = tensor
                report.add(key, part, ADAPTED, note)
        else:
            report.add(key, part, FRESH, f"shape {tuple(weights[src].shape)} there, {tuple(target.shape)} here")
    for key, first in names.items():
        if key != first and first in state:
            state[key] = state[first]
    report.unused = unused(weights, used, network, loading, with_output)
    return state, report


def check_complete(report: TransferReport, may_stay_fresh: Callable[[str], bool], fix: str,
                   unused_allowed: bool = True) -> None:
    """Strict: every tensor left fresh for another reason than a choice (encoder-only loading, the output layer) or
    ``may_stay_fresh(key)`` is a misfit, and so (unless ``unused_allowed``) is a checkpoint tensor that went nowhere:
    one error with the first three of each and ``fix``."""
    misfits = [e for e in report.entries if e.status == FRESH and e.note not in (ENCODER_ONLY, OUTPUT_NOT_LOADED)
               and not may_stay_fresh(e.key)]
    extra = [] if unused_allowed else report.unused
    if not misfits and not extra:
        return
    details = "; ".join(filter(None, [
        ", ".join(f"{e.key} ({e.note})" for e in misfits[:3]) + (f" +{len(misfits) - 3} more" if len(misfits) > 3
                                                                  else ""),
        f"not in this network: {', '.join(extra[:3])}" + (f" +{len(extra) - 3} more" if len(extra) > 3 else "")
        if extra else ""]))
    raise TransferError(f"{report.source} does not fit this network: {details}. {fix}")


def unused(weights: dict, used: set, network: nn.Module, loading: str, with_output: bool = False) -> list[str]:
    """Checkpoint tensors that went nowhere although this loading would take them; a tensor saved under several
    names (the CNN's ``decoder.encoder.x`` is its ``encoder.x``) counts once, under its first name."""
    first: dict = {}
    names = {k: first.setdefault((v.data_ptr(), tuple(v.shape), v.dtype), k) for k, v in weights.items()}
    used_first = {names[k] for k in used}
    skipped = lambda k: (not with_output and any(s in k for s in NEVER_LOADED)) or (  # noqa: E731
        loading == "encoder" and part_of(network, k) == DECODER)
    return [k for k, f in names.items() if k == f and f not in used_first and not skipped(k)]


@torch.no_grad()
def load_state(network: nn.Module, state: dict) -> None:
    """Copy ``state`` into ``network`` (every other tensor keeps its value)."""
    own = network.state_dict()
    for key, tensor in state.items():
        own[key].copy_(tensor.to(own[key].device, own[key].dtype))


def snapshot(network: nn.Module, part: str = DECODER) -> dict:
    """Copies of the tensors of one part (their fresh initialisation, taken before any loading)."""
    return {k: v.detach().clone() for k, v in network.state_dict().items()
            if aliases(network)[k] == k and part_of(network, k) == part}


def loaded_report(network: nn.Module, loaded: set, source: str, mode: str = "strict",
                  loading: str = "all") -> TransferReport:
    """The report of a load done elsewhere (nnU-Net's loader, a backbone's hand-over): ``loaded`` names the first
    keys that came from the checkpoint as they were; every other tensor started fresh."""
    report = TransferReport(source, mode, loading)
    for key, first in aliases(network).items():
        if key != first:
            continue
        part = part_of(network, key)
        if key in loaded:
            report.add(key, part, AS_IS)
        elif loading == "encoder" and part == DECODER:
            report.add(key, part, FRESH, ENCODER_ONLY)
        elif is_output(network, key):
            report.add(key, part, FRESH, OUTPUT_NOT_LOADED)
        else:
            report.add(key, part, FRESH, "not in the checkpoint or of another shape")
    return report
