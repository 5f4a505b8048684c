"""Stage 1 under torch DistributedDataParallel, one process per GPU as nnU-Net's -num_gpus (docs/pools_and_ddp.md).

Without a process group every function here is a no-op (or returns None), so the runner's single-process path
is unchanged. Under DDP:

* The unit DDP wraps is ``SchemeStep``: the masked model and the scheme (its heads, EMA teacher, buffers) in one
  module whose forward is ``scheme.step``, so gradients of the student, the mask tokens and the scheme's heads are
  averaged over the ranks. Building DDP broadcasts rank 0's parameters and buffers, the teacher's and mask
  tokens' included, so every rank starts from the same state whatever its own random initialisation.
* After every step the runner calls ``sync_state``: the scheme's ``sync_state_`` (default: floating buffers
  averaged, others from rank 0) and the same for the model's buffers. Nothing else is needed: averaged gradients
  and the same optimiser step keep the student identical, and the EMA teacher updates from it.
* Batches: nnU-Net's own split of the plans' batch size over the ranks (``_set_batch_size_and_oversample``), so
  the global batch is the plans' batch size. Randomness: each epoch rank 0 draws a seed, and every rank seeds
  torch, numpy and random from (seed, rank) (ours), so masks and crops differ between ranks, and a run resumed
  from a checkpoint (which holds rank 0's RNG state) draws what it would have drawn without the interruption.
* Rank 0 alone writes logs, pictures and checkpoints; every rank loads the same checkpoint on ``--c``.
"""
import inspect
import random
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from nnunet_anatomask.pretraining.distributed import sync_buffers_, world_size
from nnunet_anatomask.trainers.stage1_log import Stage1Log


def is_distributed() -> bool:
    return world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class SchemeStep(nn.Module):
    """Model + scheme as one module whose forward is the scheme's step (the unit DDP averages gradients over)."""

    def __init__(self, model: nn.Module, scheme: nn.Module, forward: nn.Module):
        super().__init__()
        self.model, self.scheme = model, scheme
        self._forward = (forward,)  # the compiled model where nnU-Net compiles: not a second submodule

    def forward(self, batch: dict, epoch: int):
        return self.scheme.step(batch, self._forward[0], epoch)


def wrap(model: nn.Module, scheme: nn.Module, forward: nn.Module, device: torch.device) -> Optional[nn.Module]:
    """DDP around model + scheme under a process group, else None.

    find_unused_parameters: the reconstruction uses one output layer of the plans' decoder, and a scheme may use
    a head only in some steps. No buffer broadcast before each forward (it would discard the other ranks' buffer
    updates): buffers are merged after the step by ``sync_state``; DDP still broadcasts them once at construction.
    """
    if not is_distributed():
        return None
    no_forward_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in \
        inspect.signature(DistributedDataParallel.__init__).parameters else {"broadcast_buffers": False}  # older torch
    return DistributedDataParallel(SchemeStep(model, scheme, forward),
                                   device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True, **no_forward_sync)


def sync_state(model: nn.Module, scheme) -> None:
    """After on_step_end: the scheme's own merge (``MaskingScheme.sync_state_``) and the model's buffers."""
    if is_distributed():
        scheme.sync_state_()
        sync_buffers_(model)


def reseed_ranks(device: torch.device) -> None:
    """Rank 0 draws a seed from its torch RNG; every rank seeds torch, numpy and random from (seed, rank) (ours)."""
    if not is_distributed():
        return
    seed = torch.randint(0, 2 ** 62, (1,), dtype=torch.int64).to(device)
    dist.broadcast(seed, src=0)
    words = np.random.SeedSequence([int(seed.item()), rank()]).generate_state(4)
    torch.manual_seed((int(words[0]) << 32) | int(words[1]))
    np.random.seed(int(words[2]))
    random.seed(int(words[3]))


def mean_over_ranks(figures: dict[str, float]) -> dict[str, float]:
    """Each figure averaged over the ranks that have it (nnU-Net all-gathers its training loss the same way)."""
    if not is_distributed():
        return figures
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, figures)
    names = list(dict.fromkeys(name for ranks_figures in gathered for name in ranks_figures))
    return {name: float(np.mean([g[name] for g in gathered if name in g])) for name in names}


def describe(trainer) -> str:
    """The log line of a distributed run: ranks, per-rank and global batch."""
    return (f"DDP: {world_size()} ranks, batch size {trainer.batch_size} per rank, global batch "
            f"{trainer.configuration_manager.batch_size} (the plans')")


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class QuietLog(Stage1Log):
    """The log of ranks > 0: keeps the figures, writes and prints nothing (rank 0 writes the log)."""

    def print(self, *args) -> None:
        pass

    def plot(self) -> None:
        pass


def log_class() -> type[Stage1Log]:
    return Stage1Log if rank() == 0 else QuietLog


def stage1_device(trainer) -> torch.device:
    """Where stage 1 runs: the device the trainer was asked for. nnU-Net puts every DDP rank on cuda:<rank>; a CPU
    request (nnUNetv2_pretrain -device cpu -num_gpus N: gloo processes) keeps stage 1 on the CPU (ours; nnU-Net's own
    DDP, stage 2, is CUDA-only). On CUDA the trainer's device (our scheme trainers take the GPU the launcher set)."""
    requested = torch.device(trainer.my_init_kwargs.get("device", trainer.device))
    return requested if trainer.is_ddp and requested.type == "cpu" else trainer.device


def unpack_dataset(trainer) -> None:
    """nnU-Net's unpacking, by rank 0 while the others wait (as nnUNetTrainer.on_train_start)."""
    if rank() == 0:
        trainer.dataset_class.unpack_dataset(trainer.preprocessed_dataset_folder, overwrite_existing=False,
                                             num_processes=1, verify=True)
    barrier()
