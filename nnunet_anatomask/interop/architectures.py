"""Our networks in nnssl's architecture-plan vocabulary, and a network built from such a plan alone.

nnssl's ``ArchitecturePlans`` (MIC-DKFZ/nnssl, ``adaptation_planning/adaptation_plan.py``) names either a dynamic
architecture, ``PlainConvUNet`` or ``ResidualEncoderUNet`` with the kwargs it is built with (``arch_kwargs``,
classes as dotted strings listed in ``arch_kwargs_requiring_import``), or a preset without kwargs: ``ResEncL``
or ``PrimusS``/``B``/``M``/``L``. nnU-Net's main branch builds the dynamic ones with ``get_network_from_plans``
and the presets by name (``nnunetv2/utilities/get_network_via_name.py``); ``build`` here does the same with
nnU-Net 2.8's and dynamic-network-architectures' own classes (docs/interop.md).

A PlainConvUNet plan holds the kwargs PlainConvUNet takes (``n_conv_per_stage``), not the ResEnc-shaped fields of
nnssl's ``DynamicArchitecturePlans`` dataclass (``n_blocks_per_stage``), which cannot describe it (ours: the
kwargs that rebuild the network are what nnU-Net main passes on).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from nnunet_anatomask.errors import PluginError

DYNAMIC = {"PlainConvUNet": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
           "ResidualEncoderUNet": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"}
PRIMUS_PRESETS = ("PrimusS", "PrimusB", "PrimusM", "PrimusL")
KWARGS_REQUIRING_IMPORT = ["conv_op", "norm_op", "dropout_op", "nonlin"]
# nnssl's ResEncL preset (nnssl architectures/architecture_registry.py, get_res_enc_l; Wald et al., "Revisiting
# MAE pre-training for 3D medical image segmentation", arXiv 2410.23132), as the kwargs of ResidualEncoderUNet.
RESENC_L = {
    "n_stages": 6, "features_per_stage": [32, 64, 128, 256, 320, 320], "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[3, 3, 3]] * 6, "strides": [[1, 1, 1]] + [[2, 2, 2]] * 5,
    "n_blocks_per_stage": [1, 3, 4, 6, 6, 6], "n_conv_per_stage_decoder": [1, 1, 1, 1, 1], "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
    "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
}
SUMMARY_FIELDS = ("n_stages", "features_per_stage", "strides", "kernel_sizes", "n_conv_per_stage",
                  "n_blocks_per_stage", "n_conv_per_stage_decoder")


class ArchitectureError(PluginError, ValueError):
    """An architecture plan that names no network we can build; the message names it and the fix."""


def architecture_plans(class_name: str, arch_kwargs: Optional[dict] = None,
                       requiring_import: Optional[Sequence[str]] = None) -> dict:
    """nnssl's serialised ``ArchitecturePlans``: class name, kwargs (None for a preset), kwargs to import."""
    return {"arch_class_name": class_name, "arch_kwargs": arch_kwargs,
            "arch_kwargs_requiring_import": list(requiring_import) if arch_kwargs is not None else None}


def dynamic_form(plans: dict) -> Optional[tuple[str, dict, list[str]]]:
    """(dotted class, kwargs, kwargs to import) of a dynamic plan or the ResEncL preset; None for Primus."""
    name = plans.get("arch_class_name")
    if name == "ResEncL":
        return DYNAMIC["ResidualEncoderUNet"], dict(RESENC_L), list(KWARGS_REQUIRING_IMPORT)
    short = str(name).rsplit(".", 1)[-1]
    if short in DYNAMIC:
        kwargs = plans.get("arch_kwargs")
        if not isinstance(kwargs, dict):
            raise ArchitectureError(f"the architecture plan names the dynamic {short} but holds no arch_kwargs: it "
                                    f"cannot be built. Fix: use a checkpoint whose adaptation plan has its kwargs")
        return DYNAMIC[short], dict(kwargs), list(plans.get("arch_kwargs_requiring_import") or [])
    if name in PRIMUS_PRESETS:
        return None
    raise ArchitectureError(f"the architecture plan names '{name}', which nnunet-anatomask cannot build (known: "
                            f"{', '.join([*DYNAMIC, 'ResEncL', *PRIMUS_PRESETS])}). Fix: use a checkpoint of one "
                            f"of these architectures")


def build(plans: dict, input_channels: int, output_channels: int, patch_size: Sequence[int],
          deep_supervision: bool = False) -> nn.Module:
    """The network an architecture plan describes, as nnU-Net main builds it (fresh initialisation)."""
    form = dynamic_form(plans)
    if form is None:
        from dynamic_network_architectures.architectures import primus

        preset = getattr(primus, plans["arch_class_name"])
        return preset(input_channels, output_channels, (8, 8, 8), tuple(int(p) for p in patch_size))
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    cls, kwargs, requiring_import = form
    return get_network_from_plans(cls, kwargs, requiring_import, input_channels, output_channels,
                                  deep_supervision=deep_supervision)


def same_structure(a: nn.Module, b: nn.Module) -> bool:
    """The same state-dict keys with the same shapes (what a strict load_state_dict needs)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(tuple(sa[k].shape) == tuple(sb[k].shape) for k in sa)


def describe(network: nn.Module, arch_class_name: str, arch_kwargs: dict, requiring_import: Sequence[str],
             patch_size: Sequence[int], channels: int, out_channels: Optional[int] = None) -> Optional[dict]:
    """The architecture plan that rebuilds ``network`` (same keys and shapes, ``channels`` in, ``out_channels``
    out, by default as many as in), or None.

    A CNN is described by its plans' class and kwargs, a Primus by the preset of its size; a network that neither
    rebuilds (e.g. a trainer's own build_network_architecture) gets None rather than a wrong plan.
    """
    short = str(arch_class_name).rsplit(".", 1)[-1]
    candidates = [architecture_plans(short, dict(arch_kwargs), requiring_import)] if short in DYNAMIC else []
    if all(hasattr(network, a) for a in ("down_projection", "eva", "up_projection")):
        candidates = [architecture_plans(name) for name in PRIMUS_PRESETS]
    for candidate in candidates:
        with torch.device("meta"):
            try:
                rebuilt = build(candidate, channels, out_channels or channels, patch_size)
            except Exception:  # noqa: BLE001 - a candidate that does not build describes nothing
                continue
        if same_structure(rebuilt, network):
            return candidate
    return None


def summary(plans: dict) -> str:
    """One line for messages: class and the fields that decide the weights' shapes."""
    form = dynamic_form(plans)
    if form is None:
        return plans["arch_class_name"]
    cls, kwargs, _ = form
    fields = ", ".join(f"{k} {kwargs[k]}" for k in SUMMARY_FIELDS if k in kwargs)
    return f"{cls.rsplit('.', 1)[-1]} ({fields})"


def differences(ours: dict, theirs: dict) -> list[str]:
    """'field: ours vs theirs' for every class or shape-deciding field that differs between two plans."""
    a, b = dynamic_form(ours), dynamic_form(theirs)
    if a is None or b is None or a[0] != b[0]:
        name_a = ours["arch_class_name"] if a is None else a[0].rsplit(".", 1)[-1]
        name_b = theirs["arch_class_name"] if b is None else b[0].rsplit(".", 1)[-1]
        return [] if name_a == name_b else [f"network: {name_a} vs {name_b}"]
    return [f"{k}: {a[1].get(k)} vs {b[1].get(k)}" for k in SUMMARY_FIELDS
            if k in a[1] or k in b[1] if a[1].get(k) != b[1].get(k)]
