"""The trainers users name with -tr: one per registered scheme and stage-2 recipe, plus Scratch and Finetune.
nnU-Net finds them through _ext_trainers/ (see nnunet_anatomask_hook).

The table ``STAGE2`` holds one row per backbone variant: the suffix of the trainer's name, the network stage 1
pretrains and the stage-2 trainer it fine-tunes with. A scheme trainer is ``Stage1Mixin`` (scheme_trainer.py) in
front of that stage-2 trainer: stage 1 is mixed in without touching the stage-2 trainer's optimiser. Every
``nnUNetTrainer<scheme><suffix>`` is made here from ``SCHEMES`` x ``STAGE2``, so a new scheme file needs no trainer
code and a new backbone one row; each is a module-level class of this module (picklable, found by nnU-Net's lookup).
"""
import sys
from typing import NamedTuple

from nnunetv2.training.nnUNetTrainer.primus import primus_trainers

from nnunet_anatomask.pretraining.schemes import SCHEMES, Scheme
from nnunet_anatomask.trainers.scheme_trainer import Stage1Mixin
from nnunet_anatomask.trainers.stage2 import Stage2Mixin, nnUNetTrainerFinetune, nnUNetTrainerScratch, \
    nnUNetTrainerStage2Recipe

PRIMUS_SIZES = ("S", "B", "M", "L")


class Stage2Row(NamedTuple):
    """One backbone variant: ``nnUNetTrainer<scheme><suffix>`` pretrains ``backbone`` and fine-tunes with
    ``trainer`` (``recipe`` says how, in one line)."""

    suffix: str
    backbone: str
    trainer: type
    recipe: str


def primus_stage2(size: str) -> type:
    """nnU-Net's own nnUNet_Primus_<size>_Trainer (its AdamW, lr 3e-4, warm-up) with our Stage2Mixin."""
    base = getattr(primus_trainers, f"nnUNet_Primus_{size}_Trainer")
    name = f"Stage2Primus{size}"
    return type(name, (Stage2Mixin, base), {"__module__": __name__, "__qualname__": name,
                                            "__doc__": f"Stage 2 by nnU-Net's Primus {size} recipe."})


STAGE2: list[Stage2Row] = [
    Stage2Row("", "cnn: the plans' PlainConvUNet / ResidualEncoderUNet", nnUNetTrainerStage2Recipe,
              "nnssl's fine-tuning recipe (nnUNetTrainer_warmup: SGD, lr 1e-2, warm-up + poly)"),
    *(Stage2Row(f"_Primus{size}", f"primus: Primus {size} ViT", primus_stage2(size),
                f"nnU-Net's Primus {size} recipe (nnUNet_Primus_{size}_Trainer: AdamW, lr 3e-4, warm-up + poly)")
      for size in PRIMUS_SIZES)]
globals().update({row.trainer.__name__: row.trainer for row in STAGE2[1:]})  # module-level, so pickle finds them


def trainer_name(scheme: type[Scheme], row: Stage2Row = STAGE2[0]) -> str:
    return f"nnUNetTrainer{scheme.name}{row.suffix}"


def scheme_trainer(scheme: type[Scheme], row: Stage2Row = STAGE2[0]) -> type:
    """``Stage1Mixin`` with ``scheme`` in front of the row's stage-2 trainer."""
    name = trainer_name(scheme, row)
    summary = (scheme.__doc__ or sys.modules[scheme.__module__].__doc__ or scheme.name).strip().splitlines()[0]
    doc = f"Stage 1: {summary} Stage 2: {row.recipe}."
    return type(name, (Stage1Mixin, row.trainer), {"scheme_class": scheme, "__doc__": doc, "__module__": __name__,
                                                   "__qualname__": name})


SCHEME_TRAINERS: dict[str, type] = {trainer_name(scheme, row): scheme_trainer(scheme, row)
                                    for scheme in SCHEMES.values() for row in STAGE2}
globals().update(SCHEME_TRAINERS)


def listing() -> list[tuple[str, str, str, str]]:
    """(trainer, scheme, backbone, stage-2 recipe) of every scheme trainer, then of Scratch and Finetune."""
    rows = [(trainer_name(scheme, row), scheme.name, row.backbone, row.recipe)
            for scheme in SCHEMES.values() for row in STAGE2]
    recipe = STAGE2[0].recipe
    return rows + [("nnUNetTrainerScratch", "none (random init)", STAGE2[0].backbone, recipe),
                   ("nnUNetTrainerFinetune", "none (pretrained weights)", STAGE2[0].backbone, recipe)]


__all__ = [*SCHEME_TRAINERS, "nnUNetTrainerFinetune", "nnUNetTrainerScratch"]
