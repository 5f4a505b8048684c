"""-num_gpus N on a machine that shows fewer GPUs: one message before any process starts (docs/pools_and_ddp.md).

nnU-Net's DDP launch (run_training.run_ddp) spawns N processes and the ranks beyond the visible GPUs die in
torch.cuda.set_device ("invalid device ordinal") before any trainer exists, so the check runs in the launching
process: nnUNetv2_pretrain calls it, and for nnUNetv2_train our start-up hook (nnunet_anatomask_hook) calls
``check_train_command`` when the command line names -num_gpus and one of our trainers.
"""
import os
import sys
from typing import Optional


def gpu_count_problem(num_gpus: int, device: str = "cuda") -> Optional[str]:
    """The problem and the fix when ``num_gpus`` CUDA processes cannot each get a GPU here, else None."""
    if num_gpus <= 1 or device != "cuda":
        return None
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if num_gpus <= visible:
        return None
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    shown = f" (CUDA_VISIBLE_DEVICES={mask})" if mask is not None else ""
    fix = f"-num_gpus {visible} or fewer" if visible > 1 else "-num_gpus 1 (one process)"
    return (f"-num_gpus {num_gpus} asks for {num_gpus} GPUs, but this machine shows {visible}{shown}. Fix: use "
            f"{fix}, or make more GPUs visible with CUDA_VISIBLE_DEVICES.")


def _flag(argv: list[str], name: str, default: str) -> str:
    return argv[argv.index(name) + 1] if name in argv[:-1] else default


def check_train_command(argv: list[str]) -> None:
    """For ``nnUNetv2_train ... -tr <one of ours> -num_gpus N``: print the problem and exit (code 2) at once."""
    try:
        num_gpus = int(_flag(argv, "-num_gpus", "1"))
    except ValueError:
        return  # nnU-Net's argparse reports it
    problem = gpu_count_problem(num_gpus, _flag(argv, "-device", "cuda"))
    if problem is None:
        return
    import nnunet_anatomask.trainers.registry as ours

    if _flag(argv, "-tr", "nnUNetTrainer") not in ours.__all__:
        return  # not our trainer: nnU-Net's own behaviour
    sys.stderr.write(f"nnUNetv2_train: {problem}\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(2)  # called from the start-up hook, where raising SystemExit would abort the interpreter's start
