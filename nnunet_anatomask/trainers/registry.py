"""The trainers users name with -tr: one per registered scheme and backbone variant, each also with every stage-2
recipe of its backbone as a suffix, plus Scratch and Finetune (and Finetune's recipes). nnU-Net finds them through
_ext_trainers/ (see nnunet_anatomask_hook).

The table ``STAGE2`` holds one row per backbone variant: the suffix of the trainer's name, the network stage 1
pretrains and the stage-2 trainer it fine-tunes with. A scheme trainer is ``Stage1Mixin`` (scheme_trainer.py) in
front of that stage-2 trainer: stage 1 is mixed in without touching the stage-2 trainer's optimiser. Every
``nnUNetTrainer<scheme><suffix>`` is made here from ``SCHEMES`` x ``STAGE2``, and its recipe trainers
``..._<recipe>`` from the recipes of the row's backbone (recipe_registry.py, docs/recipes.md), so a new scheme file
needs no trainer code and a new backbone one row; each is a module-level class (picklable, found by nnU-Net's lookup).
"""
import sys
from typing import NamedTuple

from nnunetv2.training.nnUNetTrainer.primus import primus_trainers

from nnunet_anatomask.pretraining.schemes import SCHEMES, Scheme
from nnunet_anatomask.recipes import CNN, PRIMUS, recipes_for
from nnunet_anatomask.trainers.recipe_registry import recipe_stage2_classes, recipe_trainer, variant
from nnunet_anatomask.trainers.scheme_trainer import Stage1Mixin
from nnunet_anatomask.trainers.stage2 import Stage2Mixin, nnUNetTrainerFinetune, nnUNetTrainerScratch, \
    nnUNetTrainerStage2Recipe

PRIMUS_SIZES = ("S", "B", "M", "L")


class Stage2Row(NamedTuple):
    """One backbone variant: ``nnUNetTrainer<scheme><suffix>`` pretrains ``backbone`` and fine-tunes with
    ``trainer`` (``recipe`` says how, in one line); ``kind`` (recipes.CNN / PRIMUS) says which stage-2 recipes
    apply."""

    suffix: str
    backbone: str
    trainer: type
    recipe: str
    kind: str


def primus_stage2(size: str) -> type:
    """nnU-Net's own nnUNet_Primus_<size>_Trainer (its AdamW, lr 3e-4, warm-up) with our Stage2Mixin."""
    base = getattr(primus_trainers, f"nnUNet_Primus_{size}_Trainer")
    name = f"Stage2Primus{size}"
    return type(name, (Stage2Mixin, base), {"__module__": __name__, "__qualname__": name,
                                            "__doc__": f"Stage 2 by nnU-Net's Primus {size} recipe."})


STAGE2: list[Stage2Row] = [
    Stage2Row("", "cnn: the plans' PlainConvUNet / ResidualEncoderUNet", nnUNetTrainerStage2Recipe,
              "the full recipe (nnUNetTrainer_warmup: SGD, lr 1e-2, warm-up + poly)", CNN),
    *(Stage2Row(f"_Primus{size}", f"primus: Primus {size} ViT", primus_stage2(size),
                f"nnU-Net's Primus {size} recipe (nnUNet_Primus_{size}_Trainer: AdamW, lr 3e-4, warm-up + poly)",
                PRIMUS)
      for size in PRIMUS_SIZES)]
globals().update({row.trainer.__name__: row.trainer for row in STAGE2[1:]})  # module-level, so pickle finds them
RECIPE_STAGE2: dict[tuple[str, str], type] = recipe_stage2_classes(STAGE2)  # (recipe suffix, Primus size or '') -> class


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
RECIPE_TRAINERS: dict[str, type] = {
    **{f"{trainer_name(scheme, row)}_{r.suffix}": recipe_trainer(
        (Stage1Mixin, RECIPE_STAGE2[(r.suffix, variant(row))]), f"{trainer_name(scheme, row)}_{r.suffix}", __name__,
        {"scheme_class": scheme, "stage1_trainer": trainer_name(scheme, row)}, r)
       for scheme in SCHEMES.values() for row in STAGE2 for r in recipes_for(row.kind)},
    **{f"nnUNetTrainerFinetune_{r.suffix}": recipe_trainer(
        (nnUNetTrainerFinetune, RECIPE_STAGE2[(r.suffix, "")]), f"nnUNetTrainerFinetune_{r.suffix}", __name__, {}, r)
       for r in recipes_for(CNN)}}
globals().update(SCHEME_TRAINERS)
globals().update(RECIPE_TRAINERS)


def listing() -> list[tuple[str, str, str, str]]:
    """(trainer, scheme, backbone, stage-2 recipe) of every scheme trainer and its recipe trainers, then of Scratch
    and Finetune (and Finetune's recipe trainers)."""
    rows = []
    for scheme in SCHEMES.values():
        for row in STAGE2:
            rows.append((trainer_name(scheme, row), scheme.name, row.backbone, row.recipe))
            rows += [(f"{trainer_name(scheme, row)}_{r.suffix}", scheme.name, row.backbone,
                      f"the recipe '{r.suffix}': {r.summary}") for r in recipes_for(row.kind)]
    cnn = STAGE2[0]
    return rows + [("nnUNetTrainerScratch", "none (random init)", cnn.backbone, cnn.recipe),
                   ("nnUNetTrainerFinetune", "none (pretrained weights)", cnn.backbone, cnn.recipe)] + [
        (f"nnUNetTrainerFinetune_{r.suffix}", "none (pretrained weights)", cnn.backbone,
         f"the recipe '{r.suffix}': {r.summary}") for r in recipes_for(CNN)]


__all__ = [*SCHEME_TRAINERS, *RECIPE_TRAINERS, "nnUNetTrainerFinetune", "nnUNetTrainerScratch"]
