"""Checkpoint I/O (docs/architecture.md, Checkpoints): atomic writes, weights_only-loadable contents, and clear errors on bad files."""
import contextlib
import hashlib
import json
import os
import pickle
import random
import shutil
from typing import Iterator, Optional

import numpy as np
import torch

from nnunet_anatomask.errors import PluginError

SKIPPED_IN_HANDOVER = (".seg_layers.",)  # nnU-Net's load_pretrained_weights skips these too


class CheckpointError(PluginError, RuntimeError):
    """A checkpoint that cannot be used here; the message names the problem and the fix."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (a full disk...); the partial file is removed."""


def temporary_path(path: str) -> str:
    return f"{path}.tmp{os.getpid()}"


def commit(tmp: str, path: str) -> None:
    """Atomically move a fully written temporary checkpoint into place (os.replace)."""
    os.replace(tmp, path)


def megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 2 ** 20:.1f} MB"


def free_space(folder: str) -> int:
    return shutil.disk_usage(folder).free


def write_failure(path: str, written: int, free_at_start: int, error: Exception) -> str:
    """The message of a failed checkpoint write: the path, the size, the free space and the fix."""
    folder = os.path.dirname(path)
    size = f"; the previous checkpoint at this path is {megabytes(os.path.getsize(path))}, left as it was" \
        if os.path.isfile(path) else ""
    cause = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return (f"Writing the checkpoint {path} failed after {megabytes(written)} ({type(error).__name__}: {cause}); "
            f"its file system had {megabytes(free_at_start)} free when the write started{size}. The partial file "
            f"was removed. Fix: free disk space in {folder} (or point nnUNet_results at a larger disk), then "
            f"continue with --c.")


@contextlib.contextmanager
def written_atomically(path: str) -> Iterator[str]:
    """Yields a temporary path beside ``path`` for the block to write; once written, it replaces ``path``
    (os.replace), so a checkpoint is never half-written. On any error the temporary file is removed (a partial
    file would keep a full disk full) and the error is raised again, naming path, size and free space (at the
    start: while the failed writer still holds the removed file open, the space is not yet given back)."""
    tmp = temporary_path(path)
    free_at_start = free_space(os.path.dirname(os.path.abspath(path)))
    try:
        yield tmp
        if os.path.isfile(tmp):  # nnU-Net writes nothing on ranks > 0 or with checkpointing disabled
            commit(tmp, path)
    except BaseException as error:
        written = os.path.getsize(tmp) if os.path.isfile(tmp) else 0
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(error, Exception):
            raise CheckpointWriteError(write_failure(path, written, free_at_start, error)) from error
        raise  # KeyboardInterrupt, SystemExit: the partial file is gone, the interruption goes on


def atomic_save(obj: dict, path: str) -> None:
    """torch.save to a temporary file beside `path`, then os.replace: never a half-written checkpoint."""
    with written_atomically(path) as tmp:
        torch.save(obj, tmp)


def to_cpu(obj):
    """The same nested structure with every tensor moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def plain(obj):
    """JSON-like plain Python: numpy scalars and arrays to floats/lists, tuples kept (weights_only-safe)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    if isinstance(obj, torch.device):
        return str(obj)
    return obj


def rng_state() -> dict:
    """Every RNG that stage 1 draws from (torch, CUDA, numpy, random), as tensors and plain types."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
             "numpy_meta": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
             "python": plain(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what rng_state() saved."""
    torch.set_rng_state(state["torch"])
    name, pos, has_gauss, cached = state["numpy_meta"]
    np.random.set_state((name, state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def plans_hash(configuration: dict) -> str:
    """A short, stable hash of one configuration of the plans (patch, spacing, network, normalisation)."""
    text = json.dumps(plain(configuration), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


READ_FIX = ("Fix: point to a complete checkpoint_final.pth written by nnU-Net or by nnunet-anatomask (copying may "
            "have been interrupted).")


def load_checkpoint_file(path: str, what: str = "checkpoint", fix: Optional[str] = None) -> dict:
    """Read a checkpoint onto the CPU, turning every way a file can be unusable into one clear message (``fix``:
    what to do about an unreadable file, default READ_FIX)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"The {what} {path} does not exist. Check the path.")
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if "weights_only" not in str(e).lower() and "weights only" not in str(e).lower():
                raise
            # nnU-Net's own checkpoints hold numpy values in their logs; nnU-Net loads them like this too.
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a bad file (KeyError, EOFError, RuntimeError...)
        raise CheckpointError(
            f"The {what} {path} cannot be read: it is truncated or not a PyTorch checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}). {fix or READ_FIX}") from None
    if not isinstance(ckpt, dict) or "network_weights" not in ckpt:
        raise CheckpointError(
            f"The {what} {path} is a PyTorch file but not an nnU-Net checkpoint (it has no 'network_weights'). "
            f"Fix: use a checkpoint_final.pth from an nnU-Net or nnunet-anatomask results folder.")
    return ckpt


def check_weights_match(model_state: dict, weights: dict, source: str,
                        skip: tuple[str, ...] = SKIPPED_IN_HANDOVER) -> None:
    """Every key of the model (but `skip`) must be in `weights` with the same shape; name the first that is not."""
    for key, tensor in model_state.items():
        if any(s in key for s in skip):
            continue
        if key not in weights:
            raise CheckpointError(
                f"{source} does not fit this network: key '{key}' (shape {tuple(tensor.shape)} here) is missing "
                f"in the checkpoint. It was trained with another architecture or plans. Fix: pretrain with the "
                f"same plans (-p) and configuration, or move plans with nnUNetv2_move_plans_between_datasets.")
        if tuple(weights[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source} does not fit this network: key '{key}' has shape {tuple(weights[key].shape)} in the "
                f"checkpoint but {tuple(tensor.shape)} here (another configuration, number of input channels or "
                f"plans). Fix: use a checkpoint trained with the same plans, configuration and input channels.")


def check_same(ckpt: dict, expected: dict, source: str) -> None:
    """Compatibility fields (scheme, plans, configuration, channels, architecture) must agree where present."""
    for key, value in expected.items():
        if key in ckpt and plain(ckpt[key]) != plain(value):
            raise CheckpointError(
                f"{source} was written for {key} = {ckpt[key]!r}, but this run has {key} = {value!r}. Fix: use a "
                f"checkpoint made for this {key}, or delete/move it so that stage 1 runs again.")
