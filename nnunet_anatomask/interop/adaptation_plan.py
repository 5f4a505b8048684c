"""Ours out: the nnssl adaptation plan every stage-1 checkpoint carries (docs/interop.md).

The structure is nnssl's serialised ``AdaptationPlan`` (MIC-DKFZ/nnssl, ``adaptation_planning/adaptation_plan.py``;
``save_checkpoint`` of its trainers writes it under ``nnssl_adaptation_plan``, and ``adaptation_plan.json`` beside
the checkpoints): ``architecture_plans``, ``pretrain_plan`` (nnssl's ``Plan`` with one entry in
``configurations``, holding the spacing and patch of pretraining), ``pretrain_num_input_channels``,
``recommended_downstream_patchsize``, ``key_to_encoder``, ``key_to_stem``, ``keys_to_in_proj``, ``key_to_lpe``.
nnU-Net main's ``nnUNetv2_preprocess_like_nnssl`` reads exactly these, plus the checkpoint's top-level
``citations``. Nothing else goes into the plan: nnssl's ``Plan.from_dict`` / ``ConfigurationPlan(**...)`` refuse
unknown fields, so our extras (CT statistics, the scheme) stay in our own checkpoint keys.
"""
from __future__ import annotations

import json
import os
from typing import Optional

from torch import nn
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_anatomask import checkpoint_io
from nnunet_anatomask.interop.architectures import describe

ADAPTATION_PLAN_KEY = "nnssl_adaptation_plan"
CITATIONS_KEY = "citations"
PLAN_FILE = "adaptation_plan.json"
# nnssl's spacing styles are onemmiso, median and noresample; nnU-Net's target spacing is the median spacing of
# the dataset (the out-of-plane axis of strongly anisotropic data at its 10th percentile): "median" (ours).
SPACING_STYLE = "median"
PLAN_FIELDS = ("architecture_plans", "pretrain_plan", "pretrain_num_input_channels",
               "recommended_downstream_patchsize", "key_to_encoder", "key_to_stem", "keys_to_in_proj", "key_to_lpe")


def pretrain_plan(plans: dict, configuration: str) -> dict:
    """nnssl's serialised ``Plan`` of our plans: the top-level entries it has, and the one configuration used
    (``resampling_fn_mask`` is nnU-Net's ``resampling_fn_seg``)."""
    config = PlansManager(plans).get_configuration(configuration).configuration
    entry = {
        "data_identifier": config["data_identifier"], "preprocessor_name": config["preprocessor_name"],
        "spacing_style": SPACING_STYLE, "normalization_schemes": list(config["normalization_schemes"]),
        "use_mask_for_norm": list(config["use_mask_for_norm"]),
        "resampling_fn_data": config["resampling_fn_data"],
        "resampling_fn_data_kwargs": dict(config["resampling_fn_data_kwargs"]),
        "resampling_fn_mask": config["resampling_fn_seg"],
        "resampling_fn_mask_kwargs": dict(config["resampling_fn_seg_kwargs"]),
        "spacing": [float(s) for s in config["spacing"]], "patch_size": [int(p) for p in config["patch_size"]],
    }
    return checkpoint_io.plain({
        "dataset_name": plans["dataset_name"], "plans_name": plans["plans_name"],
        "original_median_spacing_after_transp": list(plans["original_median_spacing_after_transp"]),
        "image_reader_writer": plans["image_reader_writer"],
        "transpose_forward": list(plans["transpose_forward"]), "transpose_backward": list(plans["transpose_backward"]),
        "configurations": {configuration: entry},
        "experiment_planner_used": plans.get("experiment_planner_used", ""),
    })


def adaptation_plan(network: nn.Module, plans: dict, configuration: str, input_channels: int) -> Optional[dict]:
    """The plan of our stage-1 ``network`` (built for ``plans`` / ``configuration`` with ``input_channels`` in and
    out), or None when no architecture plan rebuilds it exactly."""
    manager = PlansManager(plans).get_configuration(configuration)
    architecture = describe(network, manager.network_arch_class_name, manager.network_arch_init_kwargs,
                            manager.network_arch_init_kwargs_req_import, manager.patch_size, input_channels)
    if architecture is None:
        return None
    return checkpoint_io.plain({
        "architecture_plans": architecture,
        "pretrain_plan": pretrain_plan(plans, configuration),
        "pretrain_num_input_channels": int(input_channels),
        "recommended_downstream_patchsize": [int(p) for p in manager.patch_size],  # ours: stage 1 ran at it
        "key_to_encoder": network.key_to_encoder,
        "key_to_stem": network.key_to_stem,
        "keys_to_in_proj": list(network.keys_to_in_proj),
        "key_to_lpe": getattr(network, "key_to_lpe", None),
    })


def first_configuration(plan: dict) -> tuple[str, dict]:
    """(name, entry) of the pretraining configuration: the first of ``pretrain_plan.configurations``, which is
    where nnU-Net main reads the spacing and patch."""
    name, entry = next(iter(plan["pretrain_plan"]["configurations"].items()))
    return name, entry


def write_beside(checkpoint_path: str, plan: dict) -> str:
    """``adaptation_plan.json`` in the checkpoint's folder, written atomically; returns its path."""
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), PLAN_FILE)
    tmp = checkpoint_io.temporary_path(path)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(plan, f, indent=2)
    checkpoint_io.commit(tmp, path)
    return path
