"""The trainers users name with -tr. nnU-Net finds them through _ext_trainers/ (see nnunet_anatomask_hook).

One scheme trainer per registered scheme (pretraining/schemes/), named nnUNetTrainer<scheme name>: stage 1 with
that scheme, then stage 2 by nnssl's fine-tuning recipe. They are made here from the registry, so a new scheme
file needs no trainer code; each is a module-level class of this module (picklable, found by nnU-Net's lookup).
"""
import sys

from nnunet_anatomask.pretraining.schemes import SCHEMES, MaskingScheme
from nnunet_anatomask.trainers.scheme_trainer import nnUNetTrainerMaskedPretraining
from nnunet_anatomask.trainers.stage2 import nnUNetTrainerFinetune, nnUNetTrainerScratch


def trainer_name(scheme: type[MaskingScheme]) -> str:
    return f"nnUNetTrainer{scheme.name}"


def _scheme_trainer(scheme: type[MaskingScheme]) -> type[nnUNetTrainerMaskedPretraining]:
    name = trainer_name(scheme)
    summary = (scheme.__doc__ or sys.modules[scheme.__module__].__doc__ or scheme.name).strip().splitlines()[0]
    doc = f"Stage 1: {summary} Stage 2: nnssl's fine-tuning recipe (trainers/stage2.py)."
    return type(name, (nnUNetTrainerMaskedPretraining,),
                {"scheme_class": scheme, "__doc__": doc, "__module__": __name__, "__qualname__": name})


SCHEME_TRAINERS: dict[str, type[nnUNetTrainerMaskedPretraining]] = {
    trainer_name(scheme): _scheme_trainer(scheme) for scheme in SCHEMES.values()}
globals().update(SCHEME_TRAINERS)

__all__ = [*SCHEME_TRAINERS, "nnUNetTrainerFinetune", "nnUNetTrainerScratch"]
