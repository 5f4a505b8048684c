"""nnUNetv2_export_pretrained: a stage-1 checkpoint as a -pretrained_weights file for any trainer of a target.

    nnUNetv2_export_pretrained STAGE1.pth -d TARGET -c CONFIG -tr TRAINER [-p PLANS] -o OUT.pth

nnU-Net's own -pretrained_weights (run/load_pretrained_weights.py) skips only keys with '.seg_layers.' and needs
every other key with the same shape. Primus' output layer ('up_projection.decode.<last>') has another name and a
shape that depends on the class count, so a Primus stage-1 checkpoint does not load there. This command builds the
target trainer's network for the target dataset (its own build_network_architecture, the target's channels and
classes), copies every stage-1 tensor whose name and shape match, keeps the fresh initialisation for the rest (the
output layer) and writes a checkpoint that nnU-Net's plain -pretrained_weights takes. From an nnssl-format
checkpoint it copies stem and encoder (docs/interop.md), so nnU-Net's own trainers (e.g. nnUNet_Primus_M_Trainer)
can start from such a checkpoint too.
"""
from __future__ import annotations

import argparse
import os

import torch

from nnunet_anatomask import checkpoint_io
from nnunet_anatomask.errors import PluginError
from nnunet_anatomask.interop.weights_in import is_foreign_nnssl, transfer
from nnunet_anatomask.transfer.report import FRESH


def target_network(dataset: str, configuration: str, trainer_name: str, plans: str) -> tuple[torch.nn.Module, list]:
    """The network the target trainer builds for the target dataset (CPU, fresh initialisation), and its patch;
    built from the trainer class as nnU-Net's predictor builds it: no trainer object, so no results folder is made
    for a trainer that was never trained."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = os.path.join(nnUNet_preprocessed, maybe_convert_to_dataset_name(dataset))
    plans_manager = PlansManager(os.path.join(folder, plans + ".json"))
    configuration_manager = plans_manager.get_configuration(configuration)
    dataset_json = load_json(os.path.join(folder, "dataset.json"))
    channels = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    classes = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    trainer_class = recursive_find_trainer_class_by_name(trainer_name)
    network = trainer_class.build_network_architecture(plans_manager, configuration_manager, channels, classes,
                                                       enable_deep_supervision=False)
    return network, list(configuration_manager.patch_size)


def merged_weights(stage1: dict, fresh: dict) -> tuple[dict, list[str]]:
    """The fresh state with every stage-1 tensor of the same name and shape; returns it and the keys kept fresh."""
    kept = [k for k, v in fresh.items() if k not in stage1 or stage1[k].shape != v.shape]
    return {k: (fresh[k] if k in kept else stage1[k]) for k in fresh}, kept


def export(stage1_path: str, dataset: str, configuration: str, trainer_name: str, plans: str, out: str) -> list[str]:
    """Write OUT; returns the keys that kept their fresh initialisation. A stage-1 checkpoint of ours gives every
    tensor of the same name and shape; an nnssl-format checkpoint its stem and encoder (interop/weights_in.py)."""
    ckpt = checkpoint_io.load_checkpoint_file(stage1_path, "stage-1 checkpoint")
    network, patch_size = target_network(dataset, configuration, trainer_name, plans)
    if is_foreign_nnssl(ckpt):
        fix = (f"Fix: nnUNetv2_plan_like_pretrained -d {dataset} -c {configuration} -pc {stage1_path}, then export to "
               f"the plans it prints (-p).")
        report = transfer(ckpt, network, patch_size, stage1_path, fix)
        print(report.summary())
        weights, kept = network.state_dict(), report.keys(FRESH)
    else:
        fresh = network.state_dict()
        weights, kept = merged_weights(ckpt["network_weights"], fresh)
        if len(kept) > len(fresh) // 2:
            raise PluginError(f"{stage1_path} shares only {len(fresh) - len(kept)} of {len(fresh)} tensors with "
                              f"{trainer_name}'s network for {dataset} {configuration} (e.g. '{kept[0]}'): it was "
                              f"pretrained for another architecture. Fix: export to the trainer (and Primus size) it "
                              f"was pretrained with")
    checkpoint_io.atomic_save({"network_weights": checkpoint_io.to_cpu(weights), "source": stage1_path,
                               "fresh_keys": kept}, out)
    return kept


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="nnUNetv2_export_pretrained", description=__doc__.strip().splitlines()[0])
    p.add_argument("checkpoint", help="a stage-1 checkpoint (<fold>/pretraining/checkpoint_final.pth)")
    p.add_argument("-d", required=True, help="target dataset name or id")
    p.add_argument("-c", required=True, help="target configuration, e.g. 3d_fullres")
    p.add_argument("-tr", required=True, help="target trainer, e.g. nnUNet_Primus_M_Trainer")
    p.add_argument("-p", default="nnUNetPlans", help="target plans identifier (default: nnUNetPlans)")
    p.add_argument("-o", required=True, help="the -pretrained_weights file to write")
    args = p.parse_args(argv)
    try:
        kept = export(args.checkpoint, args.d, args.c, args.tr, args.p, args.o)
    except PluginError as e:
        raise SystemExit(f"nnUNetv2_export_pretrained: {e}") from None
    print(f"Wrote {os.path.abspath(args.o)}: every tensor from {args.checkpoint} except {len(kept)} freshly "
          f"initialised ({', '.join(kept[:4])}{' ...' if len(kept) > 4 else ''}). Use it with nnUNetv2_train "
          f"{args.d} {args.c} FOLD -tr {args.tr} -pretrained_weights {args.o}")


if __name__ == "__main__":
    main()
