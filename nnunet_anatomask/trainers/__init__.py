"""The trainers users name with -tr. nnU-Net finds them through _ext_trainers/ (see nnunet_anatomask_hook)."""
from nnunet_anatomask.pretraining.schemes import AnatoMaskScheme, RandomMaskScheme
from nnunet_anatomask.trainers.scheme_trainer import nnUNetTrainerMaskedPretraining
from nnunet_anatomask.trainers.stage2 import nnUNetTrainerFinetune, nnUNetTrainerScratch


class nnUNetTrainerRandomMask(nnUNetTrainerMaskedPretraining):
    """Stage 1: SparK-style random masking (ratio 0.6); stage 2: nnssl's fine-tuning recipe."""
    scheme_class = RandomMaskScheme


class nnUNetTrainerAnatoMask(nnUNetTrainerMaskedPretraining):
    """Stage 1: AnatoMask (ECCV'24) reconstruction-guided self-masking; stage 2: nnssl's fine-tuning recipe."""
    scheme_class = AnatoMaskScheme


__all__ = ["nnUNetTrainerRandomMask", "nnUNetTrainerAnatoMask", "nnUNetTrainerFinetune", "nnUNetTrainerScratch"]
