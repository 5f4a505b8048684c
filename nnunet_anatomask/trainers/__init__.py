"""The trainers users name with -tr. nnU-Net finds them through _ext_trainers/ (see nnunet_anatomask_hook).

One scheme trainer per registered scheme (pretraining/schemes/), named nnUNetTrainer<scheme name>: stage 1 with
that scheme on the plans' CNN, then stage 2 by the `full` recipe (nnU-Net's nnUNetTrainer_warmup, every
pretrained tensor but the output layer loaded). For every scheme also
nnUNetTrainer<scheme name>_Primus<S|B|M|L>: stage 1 on nnU-Net's Primus ViT of that size (token dropping, see
docs/backbones.md), then stage 2 by nnU-Net's own Primus recipe (nnUNet_Primus_<size>_Trainer). Every one of them,
and nnUNetTrainerFinetune, also comes with each stage-2 recipe of its backbone as a suffix (``_nnssl``,
``_sawtooth``, ...; recipe_registry.py, docs/recipes.md). They are made here from the registries, so a new scheme
file needs no trainer code; each is a module-level class of this module (picklable, found by nnU-Net's lookup).
"""
import sys

from nnunetv2.training.nnUNetTrainer.primus import primus_trainers

from nnunet_anatomask.pretraining.schemes import SCHEMES, MaskingScheme
from nnunet_anatomask.trainers.recipe_registry import recipe_trainers
from nnunet_anatomask.trainers.scheme_trainer import nnUNetTrainerMaskedPretraining
from nnunet_anatomask.trainers.stage2 import nnUNetTrainerFinetune, nnUNetTrainerScratch

PRIMUS_SIZES = ("S", "B", "M", "L")


def trainer_name(scheme: type[MaskingScheme], primus_size: str = "") -> str:
    return f"nnUNetTrainer{scheme.name}" + (f"_Primus{primus_size}" if primus_size else "")


def _scheme_trainer(scheme: type[MaskingScheme], primus_size: str = "") -> type[nnUNetTrainerMaskedPretraining]:
    name = trainer_name(scheme, primus_size)
    summary = (scheme.__doc__ or sys.modules[scheme.__module__].__doc__ or scheme.name).strip().splitlines()[0]
    bases = (nnUNetTrainerMaskedPretraining,)
    stage2 = "the full recipe: nnU-Net's nnUNetTrainer_warmup (trainers/stage2.py)."
    if primus_size:
        bases += (getattr(primus_trainers, f"nnUNet_Primus_{primus_size}_Trainer"),)
        stage2 = f"nnU-Net's Primus {primus_size} recipe (nnUNet_Primus_{primus_size}_Trainer), ViT stage 1."
    doc = f"Stage 1: {summary} Stage 2: {stage2}"
    return type(name, bases, {"scheme_class": scheme, "__doc__": doc, "__module__": __name__, "__qualname__": name})


SCHEME_TRAINERS: dict[str, type[nnUNetTrainerMaskedPretraining]] = {
    trainer_name(scheme, size): _scheme_trainer(scheme, size)
    for scheme in SCHEMES.values() for size in ("",) + PRIMUS_SIZES}
RECIPE_TRAINERS: dict[str, type] = recipe_trainers(
    {trainer_name(scheme, size): (SCHEME_TRAINERS[trainer_name(scheme, size)], size)
     for scheme in SCHEMES.values() for size in ("",) + PRIMUS_SIZES}, __name__)
globals().update(SCHEME_TRAINERS)
globals().update(RECIPE_TRAINERS)

__all__ = [*SCHEME_TRAINERS, *RECIPE_TRAINERS, "nnUNetTrainerFinetune", "nnUNetTrainerScratch"]
