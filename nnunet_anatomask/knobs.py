"""Run-length knobs read from environment variables, in nnU-Net's style (docs/usage.md).

Every knob is validated when a trainer is built, before any work starts, so a typo costs seconds.
"""
import os

from nnunet_anatomask.errors import PluginError

PRETRAIN_EPOCHS = "nnUNet_anatomask_pretrain_epochs"
FINETUNE_EPOCHS = "nnUNet_anatomask_finetune_epochs"
ITERS_PER_EPOCH = "nnUNet_anatomask_iters_per_epoch"
SAVE_EVERY = "nnUNet_anatomask_save_every"

DEFAULTS = {PRETRAIN_EPOCHS: 1000, FINETUNE_EPOCHS: 1000, ITERS_PER_EPOCH: 250, SAVE_EVERY: 50}


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


def check_all() -> dict[str, int]:
    """Read every knob now, so that a bad one is named before any work starts or any folder is made."""
    return {name: read_knob(name) for name in DEFAULTS}


def validation_iterations(iters_per_epoch: int) -> int:
    """Validation iterations scale with training ones as in nnU-Net (50 per 250), at least 1."""
    return max(1, round(iters_per_epoch * 50 / 250))


def warmup_epochs(fraction: float, num_epochs: int) -> int:
    """A warm-up given as a fraction of the run, at least one epoch (docs/usage.md)."""
    return max(1, round(fraction * num_epochs))
