"""Backbones: how a cell mask is applied to a network family, and how its weights go to stage 2.

Importing this package registers every backbone (each module's ``register_backbone``); ``backbone_for`` picks the
one that accepts a built network.
"""
from nnunet_anatomask.pretraining.backbones.base import (BACKBONES, Backbone, BackboneError, Encoding, MaskedModel,
                                                          MaskedOutput, backbone_for, register_backbone)
from nnunet_anatomask.pretraining.backbones import cnn, primus  # noqa: F401  (register the CNN and the ViT)

__all__ = ["BACKBONES", "Backbone", "BackboneError", "Encoding", "MaskedModel", "MaskedOutput", "backbone_for",
           "register_backbone"]
