"""What stage 2 (nnUNetTrainerFinetune) does with a pretrained checkpoint of either format (docs/interop.md).

nnU-Net 2.8.1's ``run_training`` calls ``trainer.initialize()`` and then its own ``load_pretrained_weights`` on the
``-pretrained_weights`` file, which asserts that every tensor of the network but the ``seg_layers`` is in the file.
An nnssl-format checkpoint promises only stem and encoder, so it cannot come in through that flag: the trainer
refuses it in ``initialize()`` (before nnU-Net's assertion) and names the route that takes it, the plans written by
``nnUNetv2_plan_like_pretrained``, from which the trainer loads it itself.
"""
from __future__ import annotations

from torch import nn

from nnunet_anatomask import checkpoint_io
from nnunet_anatomask.interop.adaptation_plan import ADAPTATION_PLAN_KEY, CITATIONS_KEY
from nnunet_anatomask.interop.architectures import PRIMUS_PRESETS
from nnunet_anatomask.interop.plan_like_pretrained import mismatch_fix
from nnunet_anatomask.interop.transfer import TransferReport, is_foreign_nnssl, report, transfer
from nnunet_anatomask.pretraining.backbones.cnn import unwrapped


def refuse_nnssl_format(ckpt: dict, path: str, dataset: str, configuration: str) -> None:
    """An nnssl-format checkpoint given as -pretrained_weights: one error with the commands that take it."""
    if not is_foreign_nnssl(ckpt):
        return
    raise checkpoint_io.CheckpointError(
        f"-pretrained_weights {path} is an nnssl-format checkpoint (stem and encoder, under its own key names). "
        f"nnU-Net 2.8 loads -pretrained_weights itself and needs every tensor of the network in the file, so it "
        f"cannot take it. Fix: write plans for it and train without -pretrained_weights: "
        f"nnUNetv2_plan_like_pretrained -d {dataset} -c {configuration} -pc {path} (it prints the plans name P), "
        f"nnUNetv2_preprocess -d {dataset} -c {configuration} -plans_name P, then nnUNetv2_train {dataset} "
        f"{configuration} FOLD -p P -tr nnUNetTrainerFinetune.")


def nnunet_loader_report(ckpt: dict, network: nn.Module, path: str) -> TransferReport:
    """What nnU-Net's load_pretrained_weights will load from a checked -pretrained_weights file: every tensor but
    the seg_layers."""
    network = unwrapped(network)
    loaded = {k for k in network.state_dict() if ".seg_layers." not in k and k in ckpt["network_weights"]}
    return report(network, loaded, f"-pretrained_weights {path} (loaded by nnU-Net's load_pretrained_weights)")


def citation_lines(ckpt: dict) -> list[str]:
    """The checkpoint's citations, one line each, as nnU-Net main prints them."""
    lines = []
    for item in ckpt.get(CITATIONS_KEY) or []:
        papers = item.get("apa_citations") or item.get("bibtex_citations") or []
        lines += [f"Please cite ({item.get('type', '?')} '{item.get('name', '?')}'): {paper}" for paper in papers]
    return lines


def load_from_plans(path: str, trainer) -> list[str]:
    """Load the checkpoint the plans were written for into the trainer's network; returns the log lines."""
    ckpt = checkpoint_io.load_checkpoint_file(path, "pretrained checkpoint named by the plans' pretrain_info")
    network = unwrapped(trainer.network)
    arch = (ckpt.get(ADAPTATION_PLAN_KEY) or {}).get("architecture_plans", {}).get("arch_class_name")
    dataset, config = trainer.plans_manager.dataset_name, trainer.configuration_name
    if arch in PRIMUS_PRESETS and not hasattr(network, "eva"):
        raise checkpoint_io.CheckpointError(
            f"{path} is a {arch} checkpoint and {type(trainer).__name__} trains the plans' CNN. Fix: fine-tune it "
            f"with nnU-Net's Primus recipe: nnUNetv2_export_pretrained {path} -d {dataset} -c {config} -tr "
            f"nnUNet_Primus_{arch[-1]}_Trainer -p {trainer.plans_manager.plans_name} -o OUT.pth, then "
            f"nnUNetv2_train {dataset} {config} FOLD -p {trainer.plans_manager.plans_name} -tr "
            f"nnUNet_Primus_{arch[-1]}_Trainer -pretrained_weights OUT.pth; or continue stage 1 on it with "
            f"nnUNetTrainer<Scheme>_Primus{arch[-1]}.")
    fix = mismatch_fix(ckpt, network, trainer.configuration_manager, dataset, config, path,
                       trainer.label_manager.num_segmentation_heads)
    result = transfer(ckpt, network, trainer.configuration_manager.patch_size,
                      f"The plans' pretrained checkpoint {path}", fix)
    return [result.line(), *citation_lines(ckpt)]
