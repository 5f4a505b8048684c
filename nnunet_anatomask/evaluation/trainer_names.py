"""Which trainers the harness compares: every registered masking scheme, under each stage-2 recipe asked for, and
the Scratch baseline.

The scheme list is the registry ``nnunet_anatomask.pretraining.schemes.SCHEMES`` (name -> scheme class) and a
scheme's trainer is ``"nnUNetTrainer" + name``, so a scheme joins the harness by registering itself. A recipe is a
trainer-name suffix (``nnUNetTrainerAnatoMask_nnssl``, docs/recipes.md); ``full``, the default recipe, has none.
Every recipe of a scheme shares its stage 1 (the recipe-less trainer's ``fold_all``).
"""
from __future__ import annotations

from typing import Optional, Sequence

from nnunet_anatomask.evaluation.errors import EvaluationError

PREFIX = "nnUNetTrainer"
SCRATCH = PREFIX + "Scratch"
FULL = "full"  # the default stage-2 recipe: the trainer name without a suffix
FINETUNE = PREFIX + "Finetune"  # stage 2 from -pretrained_weights (a pool's stage-1 checkpoint)


def registered_schemes() -> list[str]:
    from nnunet_anatomask.pretraining.schemes import SCHEMES
    return list(SCHEMES)


def scheme_trainers(schemes: Optional[Sequence[str]] = None) -> list[str]:
    """The trainer of every registered scheme (or of the given ones, which must be registered)."""
    known = registered_schemes()
    names = list(schemes) if schemes else known
    unknown = [s for s in names if s not in known]
    if unknown:
        raise EvaluationError(f"unknown scheme(s) {unknown}. Fix: name registered schemes ({', '.join(known)}), "
                              f"or leave --schemes out to run all of them.")
    return [PREFIX + s for s in names]


def short_name(trainer: str) -> str:
    """'nnUNetTrainerAnatoMask' -> 'AnatoMask' (the name a table shows)."""
    return trainer[len(PREFIX):] if trainer.startswith(PREFIX) else trainer


def cnn_recipes() -> list[str]:
    """The recipes the harness can run (it trains the plans' CNN): 'full' and every CNN recipe's suffix (from
    nnunet_anatomask.recipes, which imports nothing: nnU-Net is first imported after the run's roots are set)."""
    from nnunet_anatomask.recipes import CNN, recipes_for
    return [FULL, *(r.suffix for r in recipes_for(CNN))]


def with_recipes(trainers: Sequence[str], recipes: Sequence[str]) -> list[str]:
    """Every trainer under every recipe, trainer by trainer (``full`` keeps the name)."""
    known = cnn_recipes()
    unknown = [r for r in recipes if r not in known]
    if unknown or len(set(recipes)) != len(recipes):
        raise EvaluationError(f"--recipes {' '.join(recipes)}: name each once, from {', '.join(known)} "
                              f"(docs/recipes.md).")
    return [tr if r == FULL else f"{tr}_{r}" for tr in trainers for r in recipes]


def stage1_trainer(trainer: str) -> str:
    """The trainer whose fold_all holds ``trainer``'s stage 1: the name without its recipe suffix."""
    for recipe in cnn_recipes()[1:]:
        if trainer.endswith("_" + recipe):
            return trainer[: -len(recipe) - 1]
    return trainer
