"""nnunet-anatomask: masked-image-modelling pretraining for nnU-Net v2 (see README.md)."""
__version__ = "0.2.0"
