"""A scheme's settings from what a user wrote (a JSON object, docs/usage.md), checked by name before any work.

Every key must be a field of the scheme's config dataclass and every value of the field's type (an int is a
number; a list of two numbers is a pair; a choice must be one of its values); the dataclass then checks ranges.
"""
import dataclasses
import difflib
import typing
from typing import Any, Literal, Optional

from nnunet_anatomask.pretraining.schemes.base import FIX, Scheme, SchemeConfig, SchemeConfigError


def scheme_config(scheme_class: type[Scheme], overrides: Optional[dict] = None) -> SchemeConfig:
    """The scheme's config: its defaults, with ``overrides`` (name -> value) checked and applied."""
    config_class = scheme_class.config_class
    hints = typing.get_type_hints(config_class)
    names = [f.name for f in dataclasses.fields(config_class)]
    values = {}
    for key, value in (overrides or {}).items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise SchemeConfigError(f"{scheme_class.name} has no setting {key!r}.{hint} Its settings: "
                                    f"{', '.join(names)}. {FIX}")
        values[key] = checked(f"{scheme_class.name} setting {key!r}", value, hints[key])
    return config_class(**values)


OPTIMISER_SETTINGS = ("base_lr", "min_lr", "betas", "weight_decay", "warmup_fraction", "grad_clip",
                      "decay_norms_and_biases")


def refuse_unused(scheme_class: type[Scheme], overrides: dict, used_optimiser: bool, why: str) -> None:
    """Refuse, by name, optimiser settings the user set where the backbone's own recipe replaces them (Primus:
    nnssl's recipe, ``why``): they would be ignored."""
    unused = [key for key in overrides if key in OPTIMISER_SETTINGS] if not used_optimiser else []
    if unused:
        raise SchemeConfigError(f"the {scheme_class.name} settings {', '.join(unused)} are not used on this network: "
                                f"stage 1 follows {why} here (docs/backbones.md). Fix: leave them out of "
                                f"nnUNet_anatomask_scheme_config for this trainer.")


def checked(what: str, value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` (int -> float for a number, list -> tuple), or a SchemeConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value in args and type(value) is type(args[0]):
            return value
        expected = "one of " + ", ".join(repr(a) for a in args)
    elif origin is tuple:
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(checked(what, v, a) for v, a in zip(value, args))
        expected = f"a list of {len(args)} values"
    elif hint is bool and isinstance(value, bool):
        return value
    elif hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif hint is str and isinstance(value, str):
        return value
    else:
        expected = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(hint, hint)
    raise SchemeConfigError(f"the {what} must be {expected}, got {value!r} ({type(value).__name__}). {FIX}")


def plain(config: SchemeConfig) -> dict:
    """The settings as plain Python (tuples as lists): saved in the checkpoint, printed in the log."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def describe(config: SchemeConfig) -> str:
    """One log line: every setting, ``name=value``, the ones changed from the default marked with '*'."""
    default = type(config)()
    return ", ".join(f"{f.name}={getattr(config, f.name)!r}" + ("*" if getattr(config, f.name) !=
                                                               getattr(default, f.name) else "")
                     for f in dataclasses.fields(config))
