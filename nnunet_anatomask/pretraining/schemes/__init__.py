"""One file per masking scheme, all behind `MaskingScheme` (base.py). Register new schemes in SCHEMES."""
from nnunet_anatomask.pretraining.schemes.anatomask import AnatoMaskScheme
from nnunet_anatomask.pretraining.schemes.base import MaskingScheme
from nnunet_anatomask.pretraining.schemes.random_mask import RandomMaskScheme

SCHEMES: dict[str, type[MaskingScheme]] = {cls.name: cls for cls in (RandomMaskScheme, AnatoMaskScheme)}

__all__ = ["MaskingScheme", "RandomMaskScheme", "AnatoMaskScheme", "SCHEMES"]
