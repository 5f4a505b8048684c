"""One file (or sub-package) per pretraining scheme, all behind `Scheme` (base.py); masking schemes build on
`MaskingScheme` (masked_modelling.py).

Importing this package imports every module in it; each scheme registers itself in `SCHEMES` by subclassing
`Scheme` with a `name`, so a new scheme is one new file here and nothing else.
"""
import importlib
import pkgutil

from nnunet_anatomask.pretraining.schemes.base import SCHEMES, Picture, Scheme, SchemeConfig, StepOutput
from nnunet_anatomask.pretraining.schemes.masked_modelling import CellMask, MaskingConfig, MaskingScheme

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["SCHEMES", "CellMask", "MaskingConfig", "MaskingScheme", "Picture", "Scheme", "SchemeConfig",
           "StepOutput"]
