"""What stage 2 (nnUNetTrainerFinetune) does with a pretrained checkpoint of either format (docs/interop.md).

nnU-Net 2.8.1's ``run_training`` calls ``trainer.initialize()`` and then its own ``load_pretrained_weights`` on the
``-pretrained_weights`` file, which asserts that every tensor of the network but the ``seg_layers`` is in the file.
An nnssl-format checkpoint promises only stem and encoder, so it cannot come in through that flag: the trainer
refuses it in ``initialize()`` (before nnU-Net's assertion) and names the two routes that take it, where the trainer
loads it itself: the setting ``nnUNet_anatomask_pretrained_weights``, and the plans written by
``nnUNetv2_plan_like_pretrained``.
"""
from __future__ import annotations

from nnunet_anatomask import checkpoint_io, knobs
from nnunet_anatomask.interop.adaptation_plan import ADAPTATION_PLAN_KEY, CITATIONS_KEY
from nnunet_anatomask.interop.architectures import PRIMUS_PRESETS
from nnunet_anatomask.interop.plan_like_pretrained import mismatch_fix
from nnunet_anatomask.interop.weights_in import pretraining_notes, transfer, transfer_plan
from nnunet_anatomask.transfer.load import plain
from nnunet_anatomask.transfer.report import TransferReport


def refuse_primus_into_cnn(ckpt: dict, path: str, trainer) -> None:
    """A Primus checkpoint for a trainer that trains the plans' CNN: the commands of nnU-Net's Primus recipe."""
    arch = (ckpt.get(ADAPTATION_PLAN_KEY) or {}).get("architecture_plans", {}).get("arch_class_name")
    if arch not in PRIMUS_PRESETS or hasattr(plain(trainer.network), "eva"):
        return
    dataset, config, plans = trainer.plans_manager.dataset_name, trainer.configuration_name, \
        trainer.plans_manager.plans_name
    raise checkpoint_io.CheckpointError(
        f"{path} is a {arch} checkpoint and {type(trainer).__name__} trains the plans' CNN. Fix: fine-tune it "
        f"with nnU-Net's Primus recipe: nnUNetv2_export_pretrained {path} -d {dataset} -c {config} -tr "
        f"nnUNet_Primus_{arch[-1]}_Trainer -p {plans} -o OUT.pth, then nnUNetv2_train {dataset} {config} FOLD -p "
        f"{plans} -tr nnUNet_Primus_{arch[-1]}_Trainer -pretrained_weights OUT.pth; or continue stage 1 on it with "
        f"nnUNetTrainer<Scheme>_Primus{arch[-1]}.")


def citation_lines(ckpt: dict) -> list[str]:
    """The checkpoint's citations, one line each, as nnU-Net main prints them."""
    lines = []
    for item in ckpt.get(CITATIONS_KEY) or []:
        papers = item.get("apa_citations") or item.get("bibtex_citations") or []
        lines += [f"Please cite ({item.get('type', '?')} '{item.get('name', '?')}'): {paper}" for paper in papers]
    return lines


def _fix(ckpt: dict, path: str, trainer) -> str:
    return mismatch_fix(ckpt, plain(trainer.network), trainer.configuration_manager, trainer.plans_manager.dataset_name,
                        trainer.configuration_name, path, trainer.label_manager.num_segmentation_heads)


def plan_from_setting(ckpt: dict, path: str, trainer, mode: str) -> tuple[dict, TransferReport]:
    """An nnssl-format checkpoint given as nnUNet_anatomask_pretrained_weights: what of it goes into the trainer's
    network (stem and encoder; strict unless ``mode`` is 'adapt') and the report, with a note where its
    pretraining spacing or normalisation differs from the plans'. Loaded at epoch 0 by the trainer."""
    refuse_primus_into_cnn(ckpt, path, trainer)
    fix = _fix(ckpt, path, trainer)
    cm = trainer.configuration_manager
    source = f"{knobs.PRETRAINED_WEIGHTS}={path}"
    state, report = transfer_plan(ckpt, plain(trainer.network), cm.patch_size, source,
                                  f"{fix} Or set {knobs.TRANSFER}=adapt to load what fits and start the rest fresh.",
                                  mode=mode)
    if not state:
        raise checkpoint_io.CheckpointError(f"{source}: no tensor of its stem and encoder fits this network, even "
                                            f"adapted. {fix}")
    report.notes += pretraining_notes(ckpt, cm.spacing, cm.normalization_schemes)
    return state, report


def load_from_plans(path: str, trainer) -> list[str]:
    """Load the checkpoint the plans were written for into the trainer's network; returns the log lines."""
    ckpt = checkpoint_io.load_checkpoint_file(path, "pretrained checkpoint named by the plans' pretrain_info")
    refuse_primus_into_cnn(ckpt, path, trainer)
    result = transfer(ckpt, plain(trainer.network), trainer.configuration_manager.patch_size,
                      f"pretrained checkpoint {path} (named by the plans)", _fix(ckpt, path, trainer),
                      loading=trainer.pretrained_loading())
    return [*result.lines(), *citation_lines(ckpt)]
