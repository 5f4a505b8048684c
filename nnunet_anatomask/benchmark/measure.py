"""Timing and memory of the benchmark's rows: medians of steps taken in turns, end-to-end it/s, peak memory."""
import contextlib
import ctypes
import gc
import statistics
from time import perf_counter

import torch
from nnunetv2.utilities.helpers import dummy_context, empty_cache


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device):
    """nnU-Net's rule: autocast on CUDA only."""
    return torch.autocast("cuda", enabled=True) if device.type == "cuda" else dummy_context()


def timed_ms(fn, device: torch.device) -> float:
    start = perf_counter()
    fn()
    sync(device)
    return 1e3 * (perf_counter() - start)


def interleaved_medians(fns: dict, steps: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Median ms of each callable, after `warmup` calls each, the callables taking turns call by call: a change
    of machine load (other processes on a shared CPU, GPU clocks) hits each alike, so their ratios hold up."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            times[name].append(timed_ms(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}


def iterations_per_s(step, batches, steps: int, warmup: int, device: torch.device) -> float:
    """End-to-end it/s of `step(next(batches))`: data loading and the step, as the training loop runs them."""
    for _ in range(warmup):
        step(next(batches))
    sync(device)
    start = perf_counter()
    for _ in range(steps):
        step(next(batches))
    sync(device)
    return steps / (perf_counter() - start)


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(key + ":"))
    return int(line.split()[1]) * 1024


class PeakMemory:
    """Peak memory of a row over what was allocated before the row was built (so: its weights, optimiser
    state, gradients, teacher and the step's activations). CUDA: max_memory_allocated. CPU (Linux): peak
    resident set size (VmHWM, reset through /proc/self/clear_refs) over VmRSS before the build, freed heap
    memory first returned to the system (malloc_trim); 'n/a' where that is not possible."""

    def __init__(self, device: torch.device):
        self.device, self.base = device, None
        gc.collect()
        empty_cache(device)
        if device.type == "cuda":
            self.base = torch.cuda.memory_allocated(device)
            return
        with contextlib.suppress(OSError, AttributeError, StopIteration):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            self.base = _proc_status_bytes("VmRSS")

    def reset_peak(self) -> None:
        """Forget the peak so far (warm-up, compilation) but not what is allocated now."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
        except OSError:
            self.base = None

    def peak_mib(self) -> float:
        if self.device.type == "cuda":
            return (torch.cuda.max_memory_allocated(self.device) - self.base) / 2 ** 20
        return float("nan") if self.base is None else (_proc_status_bytes("VmHWM") - self.base) / 2 ** 20
