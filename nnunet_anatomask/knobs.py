"""Knobs read from environment variables, in nnU-Net's style (docs/usage.md): run lengths, stage 2's start lr, the
scheme's settings, stage 2's pretrained weights.

Every knob is validated when a trainer is built, before any work starts, so a typo costs seconds.
"""
import json
import math
import os
from typing import Optional

from nnunet_anatomask.errors import PluginError

PRETRAIN_EPOCHS = "nnUNet_anatomask_pretrain_epochs"
FINETUNE_EPOCHS = "nnUNet_anatomask_finetune_epochs"
ITERS_PER_EPOCH = "nnUNet_anatomask_iters_per_epoch"
SAVE_EVERY = "nnUNet_anatomask_save_every"
FINETUNE_LR = "nnUNet_anatomask_finetune_lr"  # stage 2's start lr; unset: the trainer's recipe (1e-2 CNN, 3e-4 Primus)
PRETRAINED_PARTS = "nnUNet_anatomask_pretrained_parts"  # 'encoder' | 'all'; unset: the recipe's (docs/recipes.md)
TRANSFER = "nnUNet_anatomask_transfer"  # 'strict' (unset) | 'adapt': weights from other plans (docs/recipes.md)
PRETRAINED_WEIGHTS = "nnUNet_anatomask_pretrained_weights"  # stage 2's start (nnUNetTrainerFinetune)
CHOICES = {PRETRAINED_PARTS: ("encoder", "all"), TRANSFER: ("strict", "adapt")}
HELDOUT_CROPS = "nnUNet_anatomask_heldout_crops"  # fixed crops of the held-out loss; 0: none (docs/watching.md)
PROBE_EVERY = "nnUNet_anatomask_probe_every"  # the linear probe every N stage-1 epochs; unset or 0: off

DEFAULTS = {PRETRAIN_EPOCHS: 1000, FINETUNE_EPOCHS: 1000, ITERS_PER_EPOCH: 250, SAVE_EVERY: 50}
SCHEME_CONFIG = "nnUNet_anatomask_scheme_config"  # a JSON object of scheme settings, inline or in a .json file
COUNT_DEFAULTS = {HELDOUT_CROPS: 32, PROBE_EVERY: 0}  # whole numbers >= 0, where 0 switches the feature off


class KnobError(PluginError, ValueError):
    """An environment knob holds something that is not a positive integer."""


def read_knob(name: str) -> int:
    """The integer value of knob `name`, or its default when unset."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return DEFAULTS[name]
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or value < 1:
        raise KnobError(
            f"{name}={raw!r} is not a positive integer. Set it to a whole number >= 1 "
            f"(e.g. `export {name}={DEFAULTS[name]}`) or unset it for the default {DEFAULTS[name]}.")
    return value


def read_count(name: str) -> int:
    """The whole-number value (>= 0; 0 = off) of knob `name`, or its default when unset."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return COUNT_DEFAULTS[name]
    text = raw.strip()
    value = int(text) if text.isascii() and text.isdigit() else None
    if value is None:
        raise KnobError(
            f"{name}={raw!r} is not a whole number >= 0. Set it to e.g. `export {name}=10` (0 switches it off) "
            f"or unset it for the default {COUNT_DEFAULTS[name]}.")
    return value


def read_lr(name: str) -> Optional[float]:
    """The positive float value of learning-rate knob `name`, or None when unset (the recipe's own lr holds)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        raise KnobError(f"{name}={raw!r} is not a positive learning rate. Set it to a number > 0 (e.g. "
                        f"`export {name}=1e-3`) or unset it for the trainer's own start lr.")
    return value


def read_choice(name: str) -> Optional[str]:
    """The value of a knob with a fixed set of values (``CHOICES``), or None when unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if raw not in CHOICES[name]:
        raise KnobError(f"{name}={raw!r} is not one of {', '.join(CHOICES[name])}. Set it to one of them or unset "
                        f"it (docs/recipes.md).")
    return raw


def pretrained_parts() -> Optional[str]:
    """'encoder' or 'all' when the user chose which pretrained parts stage 2 loads; None: the recipe's default."""
    return read_choice(PRETRAINED_PARTS)


def transfer_mode() -> str:
    """'strict' (the default: identical plans) or 'adapt' (weights from other plans adapted where possible)."""
    return read_choice(TRANSFER) or "strict"


def pretrained_weights() -> Optional[str]:
    """The checkpoint stage 2 of nnUNetTrainerFinetune starts from, or None when unset."""
    return os.environ.get(PRETRAINED_WEIGHTS, "").strip() or None


def check_all() -> dict[str, Optional[float]]:
    """Read every knob now, so that a bad one is named before any work starts or any folder is made."""
    scheme_config()
    return {**{name: read_knob(name) for name in DEFAULTS}, **{name: read_count(name) for name in COUNT_DEFAULTS},
            FINETUNE_LR: read_lr(FINETUNE_LR), **{name: read_choice(name) for name in CHOICES}}


def scheme_config() -> dict:
    """The scheme settings the user set (name -> value; {} when unset): a JSON object, or a .json file holding one.
    Which names and values a scheme takes is checked by the scheme (pretraining/schemes/settings.py)."""
    raw = os.environ.get(SCHEME_CONFIG, "").strip()
    if not raw:
        return {}
    text, source = raw, "its value"
    if not raw.startswith("{"):
        if not os.path.isfile(raw):
            raise KnobError(f"{SCHEME_CONFIG}={raw!r} is neither a JSON object nor an existing file. Set it to an "
                            f"object such as '{{\"mask_ratio\": 0.75}}' or to the path of a .json file holding one.")
        with open(raw) as f:
            text, source = f.read(), f"the file {raw}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise KnobError(f"{SCHEME_CONFIG}: {source} is not valid JSON ({e}). Fix: write a JSON object such as "
                        f"{{\"mask_ratio\": 0.75}} (double quotes around names).") from None
    if not isinstance(value, dict):
        raise KnobError(f"{SCHEME_CONFIG}: {source} holds a {type(value).__name__}, not a JSON object. Fix: write "
                        f"the settings as {{\"name\": value, ...}}.")
    return value


def validation_iterations(iters_per_epoch: int) -> int:
    """Validation iterations scale with training ones as in nnU-Net (50 per 250), at least 1."""
    return max(1, round(iters_per_epoch * 50 / 250))


def warmup_epochs(fraction: float, num_epochs: int) -> int:
    """A warm-up given as a fraction of the run, at least one epoch (docs/usage.md)."""
    return max(1, round(fraction * num_epochs))
