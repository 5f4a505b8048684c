"""Stem, encoder, decoder and output layer of a segmentation network, by dynamic-network-architectures' own names.

Every network nnU-Net builds from ``dynamic_network_architectures`` names where its stem and encoder lie
(``key_to_stem``, ``key_to_encoder``, ``key_to_lpe``: the names nnssl's adaptation plans and nnU-Net main's
``PretrainedTrainer`` use). PlainConvUNet's stem is its first encoder stage, ResEnc's is ``encoder.stem``, Primus'
is ``down_projection``. Everything else is the decoder. The output layer is the part of the decoder whose shape
follows the number of classes: the CNN's ``seg_layers``, Primus' last patch-decoder layer.

The CNN decoder holds the encoder as a submodule (``decoder.encoder``), so every encoder tensor has two names in the
state dict; each tensor belongs to the part of its first name.
"""
from __future__ import annotations

from torch import nn

STEM, ENCODER, DECODER = "stem", "encoder", "decoder"
PARTS = (STEM, ENCODER, DECODER)


def under(key: str, prefix) -> bool:
    """``key`` is ``prefix`` or a name inside it."""
    return bool(prefix) and (key == prefix or key.startswith(prefix + "."))


def part_of(network: nn.Module, key: str) -> str:
    """'stem' | 'encoder' | 'decoder' for a state-dict key of ``network`` (a first name, not an alias)."""
    if under(key, getattr(network, "key_to_stem", None)):
        return STEM
    if under(key, getattr(network, "key_to_encoder", None)) or under(key, getattr(network, "key_to_lpe", None)):
        return ENCODER
    if key.startswith("encoder."):  # a CNN encoder's tensors outside its stages (none today; kept with them)
        return ENCODER
    return DECODER


def aliases(network: nn.Module) -> dict[str, str]:
    """{every state-dict key: the first key of the same tensor} (``decoder.encoder.x`` -> ``encoder.x``)."""
    first: dict[int, str] = {}
    out = {}
    for key, tensor in network.state_dict(keep_vars=True).items():
        out[key] = first.setdefault(id(tensor), key)
    return out


def parts(network: nn.Module) -> dict[str, str]:
    """{first key of each tensor: its part}, in state-dict order."""
    return {key: part_of(network, key) for key, first in aliases(network).items() if key == first}


def output_layer(network: nn.Module) -> str:
    """The module name of the layer(s) that map features to classes: the CNN's ``decoder.seg_layers`` (one per
    resolution, deep supervision), Primus' last patch-decoder layer."""
    decoder = getattr(network, "decoder", None)
    if decoder is not None and hasattr(decoder, "seg_layers"):
        return "decoder.seg_layers"
    decode = getattr(getattr(network, "up_projection", None), "decode", None)
    if decode is not None:
        return f"up_projection.decode.{len(decode) - 1}"
    raise ValueError(f"no output layer known for {type(network).__name__} (known: nnU-Net's PlainConvUNet, "
                     f"ResidualEncoderUNet, Primus)")


def is_output(network: nn.Module, key: str) -> bool:
    return under(key, output_layer(network))


def follows_classes(network: nn.Module, key: str) -> bool:
    """A tensor whose shape may follow the number of output channels: the CNN's ``seg_layers``, and the whole of
    Primus' patch decoder (dna's ``PatchDecode`` derives every width from the output channels). A checkpoint made
    for another class count may lack these, and only these, in the same shape."""
    return ".seg_layers." in key or (under(key, "up_projection") and hasattr(network, "up_projection"))
