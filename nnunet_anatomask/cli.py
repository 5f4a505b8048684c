"""nnUNetv2_pretrain DATASET CONFIG FOLD -tr TRAINER [-p PLANS] [-pretrained_weights CKPT] [-device D] [-num_gpus N]
[--c]: stage 1 only. nnUNetv2_pretrain --list: every trainer with its scheme, backbone and stage-2 recipe.

FOLD may be `all`: every fold's nnUNetv2_train with the same trainer then reuses that stage-1 checkpoint.
-pretrained_weights starts stage 1 from a checkpoint (ours, or nnssl's: stem and encoder) instead of random weights;
--c resumes from checkpoint_latest.pth as before (docs/interop.md).
-num_gpus N runs N processes under DDP, launched as nnU-Net's run_training launches -num_gpus (NCCL on CUDA;
with -device cpu, N gloo processes: docs/pools_and_ddp.md). Across nodes, start it with torchrun (or any
launcher that sets RANK, WORLD_SIZE and LOCAL_RANK): each process joins the env:// rendezvous and takes the GPU
of its LOCAL_RANK, e.g. on every node
``torchrun --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint HOST:29500 -m nnunet_anatomask.cli
610 3d_fullres all -tr nnUNetTrainerAnatoMask``.
"""
import argparse
import difflib
import multiprocessing
import os
from importlib.metadata import version
from typing import Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nnunet_anatomask import __version__, environment, run_lock
from nnunet_anatomask.errors import PluginError
from nnunet_anatomask.gpu_check import gpu_count_problem

ENV_LAUNCH = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun (and other env:// launchers) set per process


class CommandError(PluginError, ValueError):
    """A command line that names something that does not exist; the message names the fix."""


class ListTrainers(argparse.Action):
    """--list: print every trainer (registry.listing) and exit, like --version."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(trainer_table())
        parser.exit()


def trainer_table() -> str:
    """Every trainer name with its scheme, backbone and stage-2 recipe, one per line, in aligned columns."""
    from nnunet_anatomask.trainers.registry import listing

    rows = [("trainer", "scheme", "backbone", "stage 2")] + listing()
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3] for row in rows)


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
    parser.add_argument("-num_gpus", type=int, default=1,
                        help="Processes (one per GPU) for distributed stage 1. Default: 1")
    parser.add_argument("-pretrained_weights", type=str, default=None,
                        help="Start stage 1 from this checkpoint (ours or nnssl's) instead of random weights")
    parser.add_argument("--c", action="store_true", help="Continue stage 1 from its checkpoint_latest.pth")
    parser.add_argument("--version", action="version", version=version_line())
    parser.add_argument("--list", action=ListTrainers,
                        help="print every trainer with its scheme, backbone and stage-2 recipe, and exit")
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

    from nnunet_anatomask.trainers.registry import SCHEME_TRAINERS
    from nnunet_anatomask.trainers.scheme_trainer import Stage1Mixin

    known = list(SCHEME_TRAINERS)
    try:
        cls = recursive_find_trainer_class_by_name(name)
    except RuntimeError:
        cls = None
    if cls is None or not issubclass(cls, Stage1Mixin):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise CommandError(f"'{name}' is not a pretraining (scheme) trainer.{hint} Fix: use one of "
                           f"{', '.join(known)} (nnUNetv2_pretrain --list).")
    return cls


def check_fold_folder_free(args: argparse.Namespace) -> None:
    """A fold folder that another live run holds is refused before nnU-Net's slow trainer lookup (run_lock.py)."""
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    try:
        folder = get_output_folder(args.dataset_name_or_id, args.tr, args.p, args.configuration, args.fold)
    except (RuntimeError, ValueError):
        return  # an unknown dataset: get_trainer_from_args names it
    run_lock.check_free(folder)


def pretrain(args: argparse.Namespace, callbacks: Sequence = ()) -> str:
    """Stage 1 only, in this process, for the parsed arguments, with the runner's ``callbacks``
    (trainers/stage1_callbacks.py); returns the final checkpoint's path."""
    scheme_trainer_class(args.tr)
    return run_stage1(args, callbacks)


def run_stage1(args: argparse.Namespace, callbacks: Sequence = ()) -> str:
    """Build the trainer as nnUNetv2_train does and run stage 1 (in this process, or in one DDP rank)."""
    from nnunetv2.run.run_training import get_trainer_from_args

    fold = args.fold if args.fold == "all" else int(args.fold)
    try:
        trainer = get_trainer_from_args(args.dataset_name_or_id, args.configuration, fold, args.tr, args.p,
                                        args.c, device=device_from_arg(args.device))
    except FileNotFoundError as e:
        raise CommandError(f"{e.filename} not found. Fix: run nnUNetv2_plan_and_preprocess -d "
                           f"{args.dataset_name_or_id} first, and check -p {args.p} and nnUNet_preprocessed.") from None
    for callback in callbacks:
        trainer.stage1.add_callback(callback)
    return trainer.run_pretraining(args.pretrained_weights)


def run_rank(args: argparse.Namespace, local_rank: int, **group) -> None:
    """One DDP rank: process group (``group``: rank and world size, or nothing for env://), this node's GPU
    ``local_rank``, stage 1."""
    cuda = args.device == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo", **group)
    try:
        if cuda:
            torch.cuda.set_device(torch.device("cuda", local_rank))
        run_stage1(args)
    finally:
        dist.destroy_process_group()


def rank_main(rank: int, args: argparse.Namespace) -> None:
    """The main function of one -num_gpus rank's process on this machine (nnU-Net's run_ddp without validation)."""
    try:
        run_rank(args, rank, rank=rank, world_size=args.num_gpus)
    except PluginError as e:  # the message alone, as in one process; the parent then reports the failed rank
        raise SystemExit(f"nnUNetv2_pretrain (rank {rank}): {e}") from None


def env_launch() -> Optional[tuple[int, int, int]]:
    """(rank, world size, local rank) when torchrun or another env:// launcher started this process, else None."""
    if not all(k in os.environ for k in ENV_LAUNCH):
        return None
    try:
        rank, world, local = (int(os.environ[k]) for k in ENV_LAUNCH)
    except ValueError:
        raise CommandError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers (got "
                           f"{', '.join(os.environ[k] for k in ENV_LAUNCH)}). Fix: start it with torchrun.") from None
    return rank, world, local


def pretrain_env_rank(args: argparse.Namespace, rank: int, local_rank: int) -> None:
    """One rank started by torchrun: env:// rendezvous (MASTER_ADDR/MASTER_PORT from the launcher)."""
    if args.device == "cuda" and local_rank >= torch.cuda.device_count():
        raise CommandError(f"rank {rank}: LOCAL_RANK {local_rank} but this node shows {torch.cuda.device_count()} "
                           f"GPUs. Fix: --nproc_per_node at most the node's GPU count.")
    run_rank(args, local_rank, init_method="env://")


def launch_ranks(args: argparse.Namespace) -> None:
    """nnU-Net's launch of -num_gpus (run_training.run_training): localhost rendezvous, one spawned process per
    rank."""
    from nnunetv2.run.run_training import find_free_network_port

    os.environ["MASTER_ADDR"] = "localhost"
    os.environ.setdefault("MASTER_PORT", str(find_free_network_port()))
    mp.spawn(rank_main, args=(args,), nprocs=args.num_gpus, join=True)


def main(argv=None) -> None:
    """The console script nnUNetv2_pretrain: our errors end the program with their message alone (it names the fix)."""
    args = parse_args(argv)
    try:
        launched = env_launch()
    except PluginError as e:
        raise SystemExit(f"nnUNetv2_pretrain: {e}") from None
    if launched is not None and launched[1] > 1 and args.num_gpus > 1:
        raise SystemExit(f"nnUNetv2_pretrain: started by torchrun ({launched[1]} processes) and given -num_gpus "
                         f"{args.num_gpus}, which would start more processes per process. Fix: leave out "
                         f"-num_gpus (torchrun's --nproc_per_node sets the processes per node).")
    problem = gpu_count_problem(args.num_gpus, args.device)
    if problem is not None:
        raise SystemExit(f"nnUNetv2_pretrain: {problem}")
    try:
        environment.check_training_environment(torch.device(args.device))  # in seconds, before nnU-Net's lookup
        if launched is None or launched[0] == 0:  # rank 0 holds the lock: other torchrun ranks would find it
            check_fold_folder_free(args)
        if launched is not None and launched[1] > 1:
            scheme_trainer_class(args.tr)
            pretrain_env_rank(args, launched[0], launched[2])
        elif args.num_gpus > 1:
            scheme_trainer_class(args.tr)
            launch_ranks(args)
        else:
            pretrain(args)
    except PluginError as e:
        raise SystemExit(f"nnUNetv2_pretrain: {e}") from None
    except mp.ProcessExitedException as e:
        raise SystemExit(f"nnUNetv2_pretrain: rank {e.error_index} stopped (exit code {e.exit_code}); its "
                         f"message is above.") from None


if __name__ == "__main__":
    main()
