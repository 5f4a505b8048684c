"""nnUNetv2_plan_like_pretrained: plans whose network is a pretrained checkpoint's (docs/interop.md).

    nnUNetv2_plan_like_pretrained -d DATASET -pc CHECKPOINT [-c 3d_fullres] [-pl nnUNetPlans]
                                  [-spacing checkpoint|nnunet] [-o nnUNetPlans_pretrained]

Reads the checkpoint's nnssl adaptation plan (nnssl's or ours) and the dataset's existing plans ``-pl``, and writes
``nnUNet_preprocessed/<dataset>/<-o>.json`` with one configuration ``-c`` whose network, patch size and
normalisation are the checkpoint's, at the spacing ``-spacing`` names: the checkpoint's pretraining spacing
(default, nnU-Net main's ``like_pretrained``) or the one nnU-Net planned for the dataset (``default_nnunet``). It
also records the checkpoint under ``pretrain_info``, the key and fields of nnU-Net main's
``nnUNetv2_preprocess_like_nnssl``: our trainers read the checkpoint from there (nnUNetTrainerFinetune for stage 2,
the scheme trainers to continue stage 1). The data is then preprocessed with nnU-Net's own
``nnUNetv2_preprocess -plans_name``. A Primus checkpoint keeps the plans' CNN entry (our and nnU-Net's Primus
trainers build Primus from the patch size alone).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
from typing import Optional

from torch import nn

from nnunet_anatomask import checkpoint_io
from nnunet_anatomask.errors import PluginError
from nnunet_anatomask.interop.adaptation_plan import CITATIONS_KEY, first_configuration
from nnunet_anatomask.interop.architectures import describe, differences, dynamic_form, summary
from nnunet_anatomask.interop.weights_in import check_plan

PRETRAIN_INFO = "pretrain_info"  # nnU-Net main's key (nnunetv2/experiment_planning/like_nnssl.py)
DEFAULT_NAME = "nnUNetPlans_pretrained"
SPACING_CHOICES = ("checkpoint", "nnunet")


def checkpoint_from_plans(plans: dict) -> Optional[str]:
    """The pretrained checkpoint these plans were written for (``pretrain_info.checkpoint_path``), or None."""
    info = plans.get(PRETRAIN_INFO)
    return info.get("checkpoint_path") if isinstance(info, dict) else None


def pretrain_info(plan: dict, ckpt: dict, path: str, spacing_choice: str) -> dict:
    """nnU-Net main's ``pretrain_info`` fields (what its PretrainedTrainer reads), and the spacing choice."""
    _, entry = first_configuration(plan)
    return checkpoint_io.plain({
        "checkpoint_path": os.path.abspath(path), "checkpoint_name": os.path.basename(os.path.dirname(
            os.path.abspath(path))) or os.path.basename(path),
        "key_to_encoder": plan["key_to_encoder"], "key_to_stem": plan["key_to_stem"],
        "keys_to_in_proj": list(plan["keys_to_in_proj"]), "key_to_lpe": plan.get("key_to_lpe"),
        "pt_num_in_channels": plan["pretrain_num_input_channels"], "pt_used_patchsize": entry["patch_size"],
        "pt_recommended_downstream_patchsize": plan["recommended_downstream_patchsize"],
        "citations": list(ckpt.get(CITATIONS_KEY) or []), "spacing_choice": spacing_choice,
    })


def _per_channel(values: list, channels: int) -> Optional[list]:
    """The checkpoint's per-channel entries for ``channels`` channels (one entry spread over all), or None."""
    if len(values) == channels:
        return list(values)
    return list(values) * channels if len(values) == 1 else None


def adapted_configuration(config: dict, plan: dict, ckpt: dict, spacing_choice: str, name: str,
                          configuration: str) -> tuple[dict, list[str]]:
    """The configuration with the checkpoint's network, patch, normalisation and the chosen spacing; and one line
    per change."""
    new, lines = copy.deepcopy(config), []
    _, entry = first_configuration(plan)
    form = dynamic_form(plan["architecture_plans"])
    if form is not None:
        cls, kwargs, requiring_import = form
        if len(kwargs["kernel_sizes"][0]) != len(config["patch_size"]):
            raise PluginError(f"the checkpoint's network is {len(kwargs['kernel_sizes'][0])}D and configuration "
                              f"'{configuration}' is {len(config['patch_size'])}D. Fix: choose a configuration of "
                              f"the checkpoint's dimension with -c")
        new["architecture"] = {"network_class_name": cls, "arch_kwargs": kwargs,
                               "_kw_requires_import": requiring_import}
        lines.append(f"network: {summary(plan['architecture_plans'])}")
    else:
        lines.append(f"network: {plan['architecture_plans']['arch_class_name']} (train with a _Primus"
                     f"{plan['architecture_plans']['arch_class_name'][-1]} trainer, which builds it from the patch)")
    patch = [int(p) for p in plan["recommended_downstream_patchsize"]]
    if len(patch) != len(config["patch_size"]):
        raise PluginError(f"the checkpoint recommends the patch {patch}, configuration '{configuration}' has "
                          f"{len(config['patch_size'])} axes. Fix: choose a configuration with {len(patch)} axes")
    new["patch_size"] = patch
    lines.append(f"patch size: {patch} (the checkpoint's recommendation; {list(config['patch_size'])} before)")
    pretrained = entry.get("spacing")
    if spacing_choice == "checkpoint" and pretrained is not None and all(s is not None for s in pretrained):
        new["spacing"] = [float(s) for s in pretrained]
        lines.append(f"spacing: {new['spacing']}, the checkpoint's pretraining spacing (-spacing checkpoint; "
                     f"nnU-Net planned {list(config['spacing'])} for this dataset, -spacing nnunet)")
    else:
        why = "-spacing nnunet" if spacing_choice == "nnunet" else "the checkpoint names no pretraining spacing"
        lines.append(f"spacing: {list(config['spacing'])}, nnU-Net's for this dataset ({why}; pretraining "
                     f"spacing {pretrained})")
    channels = len(config["normalization_schemes"])
    for key in ("normalization_schemes", "use_mask_for_norm"):
        values = _per_channel(list(entry.get(key) or []), channels)
        if values is not None:
            new[key] = values
    lines.append(f"normalisation: {new['normalization_schemes']} (the checkpoint's; "
                 f"{list(config['normalization_schemes'])} before)")
    new["data_identifier"] = f"{name}_{configuration}"
    return new, lines


def plans_like_pretrained(base: dict, configuration: str, ckpt: dict, path: str, spacing_choice: str,
                          name: str) -> tuple[dict, list[str]]:
    """New plans from the dataset's ``base`` plans and the checkpoint; one line per change."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plan = check_plan(ckpt, f"The checkpoint {path}")
    if configuration not in base.get("configurations", {}):
        raise PluginError(f"the plans {base.get('plans_name')} have no configuration '{configuration}' (they have "
                          f"{', '.join(base.get('configurations', {}))}). Fix: plan it, or choose one with -c")
    config = PlansManager(base).get_configuration(configuration).configuration
    new_config, lines = adapted_configuration(config, plan, ckpt, spacing_choice, name, configuration)
    plans = copy.deepcopy(base)
    plans.update(plans_name=name, configurations={configuration: new_config})
    plans[PRETRAIN_INFO] = pretrain_info(plan, ckpt, path, spacing_choice)
    ours = (ckpt.get("init_args") or {}).get("plans")  # our checkpoints carry their plans: the CT window too
    if isinstance(ours, dict) and "CTNormalization" in new_config["normalization_schemes"] and \
            "foreground_intensity_properties_per_channel" in ours:
        plans["foreground_intensity_properties_per_channel"] = ours["foreground_intensity_properties_per_channel"]
        lines.append("CT statistics: the checkpoint's (the same HU reach the network as the same inputs)")
    return plans, lines


def mismatch_fix(ckpt: dict, network: nn.Module, configuration_manager, dataset: str, configuration: str, path: str,
                 out_channels: int) -> str:
    """What differs between the checkpoint's network and this run's, and the commands that plan like it."""
    cm, plan = configuration_manager, ckpt.get("nnssl_adaptation_plan") or {}
    channels = network.get_submodule(network.keys_to_in_proj[0]).weight.shape[1] \
        if hasattr(network, "keys_to_in_proj") else 1
    ours = describe(network, cm.network_arch_class_name, cm.network_arch_init_kwargs,
                    cm.network_arch_init_kwargs_req_import, cm.patch_size, channels, out_channels)
    what = ""
    if "architecture_plans" in plan and ours is not None:
        changed = differences(plan["architecture_plans"], ours)
        what = (f"The checkpoint's network is {summary(plan['architecture_plans'])}, this run's is {summary(ours)}"
                + (f" (checkpoint vs here: {'; '.join(changed)})" if changed else "") + ". ")
    return (f"{what}Fix: write plans whose network is the checkpoint's and preprocess with them: "
            f"nnUNetv2_plan_like_pretrained -d {dataset} -c {configuration} -pc {path} (it prints the plans "
            f"name P), nnUNetv2_preprocess -d {dataset} -c {configuration} -plans_name P, then train with -p P.")


def plans_folder(dataset: str) -> str:
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    if nnUNet_preprocessed is None:
        raise PluginError("nnUNet_preprocessed is not set. Fix: export nnUNet_preprocessed=/path/to/preprocessed")
    return os.path.join(nnUNet_preprocessed, maybe_convert_to_dataset_name(dataset))


def write_plans(dataset: str, configuration: str, path: str, base_name: str, spacing_choice: str,
                name: str) -> tuple[str, list[str]]:
    """Write the plans; returns their path and the lines describing them."""
    folder = plans_folder(dataset)
    base_file = os.path.join(folder, f"{base_name}.json")
    if not os.path.isfile(base_file):
        raise PluginError(f"{base_file} does not exist: the dataset was never planned. Fix: plan it once with "
                          f"nnUNetv2_plan_and_preprocess -d {dataset} -c {configuration} --no_pp, then run this "
                          f"command again.")
    if name == base_name:
        raise PluginError(f"-o {name} would overwrite the plans it starts from. Fix: choose another name with -o")
    with open(base_file, encoding="utf-8") as f:
        base = json.load(f)
    ckpt = checkpoint_io.load_checkpoint_file(path, "pretrained checkpoint")
    plans, lines = plans_like_pretrained(base, configuration, ckpt, path, spacing_choice, name)
    out = os.path.join(folder, f"{name}.json")
    tmp = checkpoint_io.temporary_path(out)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(plans, f, indent=2)
    checkpoint_io.commit(tmp, out)
    return out, lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="nnUNetv2_plan_like_pretrained",
                                description="Write plans whose network is a pretrained checkpoint's.")
    p.add_argument("-d", required=True, help="dataset name or id")
    p.add_argument("-pc", required=True, help="pretrained checkpoint (nnssl's or ours) with an adaptation plan")
    p.add_argument("-c", default="3d_fullres", help="configuration (default 3d_fullres)")
    p.add_argument("-pl", default="nnUNetPlans", help="the dataset's plans to start from (default nnUNetPlans)")
    p.add_argument("-spacing", default="checkpoint", choices=SPACING_CHOICES,
                   help="checkpoint: the pretraining spacing (default); nnunet: the spacing nnU-Net planned")
    p.add_argument("-o", default=DEFAULT_NAME, help=f"name of the new plans (default {DEFAULT_NAME})")
    args = p.parse_args(argv)
    try:
        out, lines = write_plans(args.d, args.c, args.pc, args.pl, args.spacing, args.o)
    except PluginError as e:
        raise SystemExit(f"nnUNetv2_plan_like_pretrained: {e}") from None
    print(f"Wrote {out} (plans {args.o}, configuration {args.c}, from {args.pl} and {args.pc}):")
    for line in lines:
        print(f"  {line}")
    print(f"Next: nnUNetv2_preprocess -d {args.d} -c {args.c} -plans_name {args.o}\n"
          f"then stage 2 from the checkpoint: nnUNetv2_train {args.d} {args.c} FOLD -p {args.o} "
          f"-tr nnUNetTrainerFinetune\n"
          f"or stage 1 continued from it: nnUNetv2_pretrain {args.d} {args.c} all -p {args.o} "
          f"-tr nnUNetTrainerAnatoMask (any scheme trainer)")


if __name__ == "__main__":
    main()
