"""Which trainers the harness compares: every registered masking scheme and the Scratch baseline.

The scheme list is the registry ``nnunet_anatomask.pretraining.schemes.SCHEMES`` (name -> scheme class) and a
scheme's trainer is ``"nnUNetTrainer" + name``, so a scheme joins the harness by registering itself.
"""
from __future__ import annotations

from typing import Optional, Sequence

from nnunet_anatomask.evaluation.errors import EvaluationError

PREFIX = "nnUNetTrainer"
SCRATCH = PREFIX + "Scratch"
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
