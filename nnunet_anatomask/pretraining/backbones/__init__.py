"""Backbones: how a cell mask is applied to a network family, and how its weights go to stage 2.

Each module of this package registers its backbone with ``register_backbone``; ``backbone_for`` imports them all
on first use (so that ``masked_forward`` can import ``MaskedOutput`` from here without an import cycle).
"""
from nnunet_anatomask.pretraining.backbones.base import (BACKBONES, Backbone, BackboneError, MaskedOutput,
                                                          backbone_for, register_backbone)

__all__ = ["BACKBONES", "Backbone", "BackboneError", "MaskedOutput", "backbone_for", "register_backbone"]
