"""RandomMask: SparK-style uniform random cell masking, the baseline every scheme is compared with.

Ratio 0.6 (AnatoMask's, so that a comparison isolates AnatoMask's choice of cells); optimiser as AnatoMask.
"""
import torch

from nnunet_anatomask.pretraining import masking
from nnunet_anatomask.pretraining.schemes.base import MaskingScheme


class RandomMaskScheme(MaskingScheme):
    name = "RandomMask"

    def select_mask(self, images: torch.Tensor, epoch: int) -> torch.Tensor:
        return masking.random_mask(self.random_key(images), self.n_masked(epoch))
