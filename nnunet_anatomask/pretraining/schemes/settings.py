"""A scheme's settings from what a user wrote (a JSON object, docs/usage.md), checked by name before any work.

Every key must be a field of the scheme's config dataclass and every value of the field's type (an int is a
number; a list of two numbers is a pair; a choice must be one of its values); the dataclass then checks ranges.
``run_settings`` then gives a run its optimiser recipe on the backbone in use (docs/backbones.md).
"""
import dataclasses
import difflib
import typing
from typing import Any, Literal, Optional

from nnunet_anatomask.pretraining.backbones.base import Backbone
from nnunet_anatomask.pretraining.recipes import Stage1Recipe
from nnunet_anatomask.pretraining.schemes.base import FIX, Scheme, SchemeConfig, SchemeConfigError
from nnunet_anatomask.pretraining.schemes.masked_modelling import with_recipe_ratio


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


def run_settings(scheme_class: type[Scheme], overrides: dict, backbone: Backbone) -> tuple[SchemeConfig, Stage1Recipe]:
    """A run's settings and optimiser recipe: ``overrides`` checked; the recipe of the backbone's network family
    (Primus: nnssl's) unless ``primus_recipe`` is "scheme" or the family has none (the CNNs: the scheme's own);
    settings the run would ignore refused; the recipe's mask ratio where the paper fixes none."""
    config = scheme_config(scheme_class, overrides)
    own = config.recipe(scheme_class.name)
    family = backbone.recipe(own)
    recipe = own if config.primus_recipe == "scheme" else family
    refuse_unused(scheme_class, overrides, used_optimiser=recipe is own, has_own_recipe=family is not own,
                  why=recipe.source)
    return with_recipe_ratio(config, scheme_class, recipe.mask_ratio, overrides), recipe


def refuse_unused(scheme_class: type[Scheme], overrides: dict, used_optimiser: bool, has_own_recipe: bool,
                  why: str) -> None:
    """Refuse, by name, settings the run would ignore: optimiser settings where the backbone's own recipe replaces
    them (Primus: nnssl's recipe, ``why``), ``primus_recipe`` where the network family has no recipe of its own."""
    unused = [key for key in overrides if key in OPTIMISER_SETTINGS] if not used_optimiser else []
    unused += ["primus_recipe"] if "primus_recipe" in overrides and not has_own_recipe else []
    if unused:
        choice = "" if used_optimiser else ', or set "primus_recipe": "scheme" to pretrain with them'
        raise SchemeConfigError(f"the {scheme_class.name} settings {', '.join(unused)} are not used on this network: "
                                f"stage 1 follows {why} here (docs/backbones.md). Fix: leave them out of "
                                f"nnUNet_anatomask_scheme_config for this trainer{choice}.")


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
