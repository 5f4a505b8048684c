"""The environment a run needs, checked at start-up, before a trainer is built (docs/troubleshooting.md).

Without these checks nnU-Net fails later and less clearly: ``TypeError: expected str ... not NoneType`` when
nnUNet_results is unset, a raw ``OSError`` when the results path is a file or read-only, ``Found no NVIDIA driver``
when nothing says ``-device cpu`` on a machine without a GPU. Each problem here is one line naming the fix.
"""
from __future__ import annotations

import os
import tempfile
from typing import Optional

import torch

from nnunet_anatomask.errors import PluginError

PATH_VARIABLES = ("nnUNet_preprocessed", "nnUNet_results")  # what training reads; nnUNet_raw only planning


class EnvironmentProblem(PluginError, RuntimeError):
    """An environment variable, folder or device that a run needs is missing or unusable."""


def check_paths_set(names: tuple[str, ...] = PATH_VARIABLES) -> None:
    """nnU-Net's path variables must be set (nnU-Net's documentation/setting_up_paths.md)."""
    for name in names:
        if not os.environ.get(name):
            raise EnvironmentProblem(
                f"{name} is not set: nnU-Net reads its preprocessed data from nnUNet_preprocessed and writes every "
                f"trained model under nnUNet_results. Fix: export {name}=/path/to/folder (nnU-Net's "
                f"documentation/setting_up_paths.md), in the shell that runs this command.")


def check_writable(folder: str, what: str) -> None:
    """``folder`` exists as a writable folder, or can be created: its nearest existing ancestor is a folder in
    which this process can create a folder (tried, then removed)."""
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise EnvironmentProblem(
            f"{what} {folder} cannot be created: {existing} is a file, not a folder. Fix: point nnUNet_results at "
            f"a folder (or move that file away).")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".nnunet_anatomask_write_test_", dir=existing))
    except OSError as e:
        raise EnvironmentProblem(
            f"{what} {folder} cannot be written: creating a folder in {existing} failed ({e.strerror or e}). Fix: "
            f"point nnUNet_results at a folder you can write to (not on a read-only file system), or fix its "
            f"permissions.") from None


def check_device(device: torch.device) -> None:
    """The requested device exists here; nnU-Net's default, cuda, on a machine without a GPU names -device cpu."""
    if device.type == "cuda" and not torch.cuda.is_available():
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise EnvironmentProblem(
            f"This run would train on CUDA (nnU-Net's default -device cuda), but torch sees no CUDA GPU here "
            f"(torch {torch.__version__}, {build}). Fix: add -device cpu to the command (or -device mps on Apple "
            f"silicon); on a GPU machine, check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise EnvironmentProblem("-device mps asks for Apple's Metal GPU, which torch does not find here. Fix: use "
                                 "-device cpu (or -device cuda on a machine with an NVIDIA GPU).")


def check_training_environment(device: torch.device, fold_folder: Optional[str] = None) -> None:
    """Everything above, for a training run whose fold folder is ``fold_folder`` (nnUNet_results itself if None)."""
    check_paths_set()
    check_writable(fold_folder or os.environ["nnUNet_results"], "The results folder")
    check_device(device)
