"""nnUNetv2_pretrain DATASET CONFIG FOLD -tr TRAINER [-p PLANS] [-device D] [--c]: stage 1 only.

FOLD may be `all`: every fold's nnUNetv2_train with the same trainer then reuses that stage-1 checkpoint.
"""
import argparse
import difflib
import multiprocessing
from importlib.metadata import version

import torch

from nnunet_anatomask import __version__
from nnunet_anatomask.errors import PluginError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_pretrain", description="Run stage 1 (masked-image-modelling pretraining) only.")
    parser.add_argument("dataset_name_or_id", type=str, help="Dataset name or ID to pretrain on")
    parser.add_argument("configuration", type=str, help="Configuration whose plans are used (e.g. 3d_fullres)")
    parser.add_argument("fold", type=str, help="Fold (0-4) whose training cases are used, or 'all'")
    parser.add_argument("-tr", type=str, required=True,
                        help="Scheme trainer, e.g. nnUNetTrainerAnatoMask or nnUNetTrainerRandomMask")
    parser.add_argument("-p", type=str, default="nnUNetPlans", help="Plans identifier. Default: nnUNetPlans")
    parser.add_argument("-device", type=str, default="cuda", choices=["cuda", "cpu", "mps"],
                        help="Device to train on. Default: cuda")
    parser.add_argument("--c", action="store_true", help="Continue stage 1 from its checkpoint_latest.pth")
    parser.add_argument("--version", action="version", version=version_line())
    return parser.parse_args(argv)


def version_line() -> str:
    return f"nnunet-anatomask {__version__} (nnunetv2 {version('nnunetv2')}, torch {torch.__version__})"


def device_from_arg(name: str) -> torch.device:
    """The same thread settings as nnUNetv2_train."""
    if name == "cpu":
        torch.set_num_threads(multiprocessing.cpu_count())
    elif name == "cuda":
        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    return torch.device(name)


def scheme_trainer_class(name: str) -> type:
    """nnU-Net's own trainer lookup, with a message listing our scheme trainers when the name is not one."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_anatomask.trainers.scheme_trainer import nnUNetTrainerMaskedPretraining
    import nnunet_anatomask.trainers as ours

    known = [n for n in ours.__all__ if issubclass(getattr(ours, n), nnUNetTrainerMaskedPretraining)]
    try:
        cls = recursive_find_trainer_class_by_name(name)
    except RuntimeError:
        cls = None
    if cls is None or not issubclass(cls, nnUNetTrainerMaskedPretraining):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise SystemExit(f"nnUNetv2_pretrain: '{name}' is not a pretraining (scheme) trainer.{hint} "
                         f"Fix: use one of {', '.join(known)}.")
    return cls


def pretrain_entry(argv=None) -> None:
    """The console script: our errors end the program with their message alone (it names the fix)."""
    try:
        pretrain(parse_args(argv))
    except PluginError as e:
        raise SystemExit(f"nnUNetv2_pretrain: {e}") from None


def pretrain(args: argparse.Namespace) -> str:
    """Stage 1 only, for the parsed arguments; returns the final checkpoint's path."""
    fold = args.fold if args.fold == "all" else int(args.fold)
    scheme_trainer_class(args.tr)
    from nnunetv2.run.run_training import get_trainer_from_args

    try:
        trainer = get_trainer_from_args(args.dataset_name_or_id, args.configuration, fold, args.tr, args.p,
                                        args.c, device=device_from_arg(args.device))
    except FileNotFoundError as e:
        raise SystemExit(f"nnUNetv2_pretrain: {e.filename} not found. Fix: run nnUNetv2_plan_and_preprocess -d "
                         f"{args.dataset_name_or_id} first, and check -p {args.p} and nnUNet_preprocessed.") from None
    return trainer.run_pretraining()


if __name__ == "__main__":
    pretrain_entry()
