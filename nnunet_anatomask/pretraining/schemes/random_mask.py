"""RandomMask: SparK-style uniform random cell masking, the baseline every scheme is compared with.

Settings: MaskingConfig's (ratio 0.6, AnatoMask's: a comparison isolates AnatoMask's choice of cells).
"""
import torch

from nnunet_anatomask.pretraining import masking
from nnunet_anatomask.pretraining.schemes.masked_modelling import CellMask, MaskingConfig, MaskingScheme


class RandomMaskScheme(MaskingScheme):
    name, config_class = "RandomMask", MaskingConfig

    def select_mask(self, images: torch.Tensor, epoch: int) -> CellMask:
        return CellMask(masking.random_mask(self.random_key(images), self.n_masked(epoch)))
