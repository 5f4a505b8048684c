"""One file per masking scheme, all behind `MaskingScheme` (base.py).

Importing this package imports every module in it; each scheme registers itself in `SCHEMES` by subclassing
`MaskingScheme` with a `name`, so a new scheme is one new file here and nothing else.
"""
import importlib
import pkgutil

from nnunet_anatomask.pretraining.schemes.base import SCHEMES, MaskingScheme, Picture, StepOutput

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["SCHEMES", "MaskingScheme", "Picture", "StepOutput"]
