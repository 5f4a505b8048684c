"""Collectives that keep stage-1 state identical on every rank under torch.distributed (docs/pools_and_ddp.md).

Every function is a no-op in a single process, so schemes call them unconditionally.
"""
import torch
import torch.distributed as dist
from torch import nn


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.no_grad()
def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """A new tensor holding ``tensor`` summed over the ranks; in one process ``tensor`` itself."""
    if world_size() == 1:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


@torch.no_grad()
def sync_buffers_(module: nn.Module) -> None:
    """In place, on every rank: floating buffers averaged over the ranks, every other buffer set to rank 0's (ours).

    An average is the right merge for state that each rank updates linearly from its own batch (running means,
    EMA-updated centroids: the mean of the ranks' updates is the update with the ranks' mean statistics).
    """
    n = world_size()
    if n == 1:
        return
    floating: dict[torch.dtype, list[torch.Tensor]] = {}
    for buffer in module.buffers():
        if buffer.is_floating_point():
            floating.setdefault(buffer.dtype, []).append(buffer)
        else:
            dist.broadcast(buffer, src=0)
    for buffers in floating.values():  # one all-reduce per dtype
        flat = torch.cat([b.reshape(-1) for b in buffers])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= n
        torch._foreach_copy_(buffers, [f.view_as(b) for f, b in zip(flat.split([b.numel() for b in buffers]),
                                                                    buffers)])
