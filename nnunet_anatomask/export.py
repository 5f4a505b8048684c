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
from nnunet_anatomask.interop.transfer import is_foreign_nnssl, transfer_nnssl


def target_network(dataset: str, configuration: str, trainer_name: str, plans: str) -> tuple[torch.nn.Module, list]:
    """The network the target trainer builds for the target dataset (CPU, fresh initialisation), and its patch."""
    from nnunetv2.run.run_training import get_trainer_from_args
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    trainer = get_trainer_from_args(dataset, configuration, 0, trainer_name, plans, device=torch.device("cpu"))
    channels = determine_num_input_channels(trainer.plans_manager, trainer.configuration_manager,
                                            trainer.dataset_json)
    classes = trainer.label_manager.num_segmentation_heads
    network = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, channels,
                                                 classes, enable_deep_supervision=trainer.enable_deep_supervision)
    return network, list(trainer.configuration_manager.patch_size)


def merged_weights(stage1: dict, fresh: dict) -> tuple[dict, list[str]]:
    """The fresh state with every stage-1 tensor of the same name and shape; returns it and the keys kept fresh."""
    kept = [k for k, v in fresh.items() if k not in stage1 or stage1[k].shape != v.shape]
    return {k: (fresh[k] if k in kept else stage1[k]) for k in fresh}, kept


def export(stage1_path: str, dataset: str, configuration: str, trainer_name: str, plans: str, out: str) -> list[str]:
    """Write OUT; returns the keys that kept their fresh initialisation. A stage-1 checkpoint of ours gives every
    tensor of the same name and shape; an nnssl-format checkpoint its stem and encoder (interop/transfer.py)."""
    ckpt = checkpoint_io.load_checkpoint_file(stage1_path, "stage-1 checkpoint")
    network, patch_size = target_network(dataset, configuration, trainer_name, plans)
    if is_foreign_nnssl(ckpt):
        fix = (f"Fix: nnUNetv2_plan_like_pretrained -d {dataset} -c {configuration} -pc {stage1_path}, then export to "
               f"the plans it prints (-p).")
        report = transfer_nnssl(ckpt, network, patch_size, stage1_path, fix)
        print(report.line())
        weights, kept = network.state_dict(), report.fresh_keys
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
