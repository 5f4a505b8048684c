"""The benchmark's rows: nnU-Net's supervised step and one stage-1 step per scheme, each built in its own memory
window, timed in turns; per scheme also the costs that are ours (select_mask, teacher, loss, EMA, emulation)."""
import contextlib
import io
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_anatomask.benchmark.measure import PeakMemory, autocast, interleaved_medians, iterations_per_s
from nnunet_anatomask.progress import Progress
from nnunet_anatomask.pretraining import masking
from nnunet_anatomask.pretraining.schemes import SCHEMES
from nnunet_anatomask.pretraining.schemes.masked_modelling import MaskedModelling
from nnunet_anatomask.benchmark.sources import release
from nnunet_anatomask.trainers.stage1 import Stage1Runner
from nnunet_anatomask.trainers.stage1_data import crop_size, shutdown, stage1_batches


@dataclass
class Row:
    name: str
    step: Callable[[dict], object]  # one train step on a batch {'data', 'target'}
    batches: Callable[[], Iterator[dict]]  # the real data loader of this row (with --dataset)
    runner: Optional[Stage1Runner]  # None for the supervised row
    batch: Optional[dict] = None  # this row's fixed batch, when it differs from the shared one (larger crops)
    step_ms: float = float("nan")
    peak_mib: float = float("nan")
    e2e_its: float = float("nan")
    parts: dict = field(default_factory=dict)  # our costs (ms) of a scheme's step


def measured_build(name: str, build, batch: dict, args) -> Row:
    """Build a row's step inside a memory window, run the warm-up, then one step for the peak memory."""
    memory = PeakMemory(torch.device(args.device))
    row = Row(name, *build())
    row.batch = row.batch or batch
    for _ in range(args.warmup):
        row.step(row.batch)
    memory.reset_peak()
    row.step(row.batch)
    row.peak_mib = memory.peak_mib()
    return row


# ==================================================================== the rows
def supervised_parts(trainer: nnUNetTrainer):
    """nnU-Net's network, loss and optimiser (initialize()) and its own nnUNetTrainer.train_step."""
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.initialize()

    def batches():
        loader_tr, loader_val = trainer.get_dataloaders()
        shutdown(loader_val)
        return loader_tr

    return trainer.train_step, batches, None


def crop_batch(trainer: nnUNetTrainer, crop_scale: float, synthetic: bool) -> Optional[dict]:
    """A batch of the scheme's loader crops when they are larger than the patch (random, or the real loader's)."""
    if crop_scale == 1:
        return None
    if not synthetic:
        batches = stage1_batches(trainer, crop_scale)
        try:
            return next(batches)
        finally:
            shutdown(batches)
    crop = crop_size(trainer.configuration_manager.patch_size, crop_scale)
    return {"data": torch.randn(trainer.batch_size, trainer.num_input_channels, *crop)}


def scheme_parts(trainer: nnUNetTrainer, scheme_name: str, synthetic: bool):
    """A Stage1Runner at its last epoch (AnatoMask: alpha = 0.5, the teacher runs); the step as train_epoch
    runs it, the batch moved to the device first."""
    scheme = SCHEMES[scheme_name]
    runner = Stage1Runner(trainer, scheme)
    runner.num_epochs = max(runner.num_epochs, 2)
    runner.build()
    epoch, device = runner.num_epochs - 1, runner.device
    step = lambda b: runner.loop.train_step(b, epoch)  # noqa: E731  (moves the batch to the device)
    crop_scale = runner.config.crop_scale
    return (step, lambda: stage1_batches(trainer, crop_scale, device), runner,
            crop_batch(trainer, crop_scale, synthetic))


def our_costs(runner: Stage1Runner, batch: dict, args) -> dict:
    """ms of a stage-1 step and of its parts that are ours, called as train_step calls them, taking turns."""
    scheme, device, epoch = runner.scheme, runner.device, runner.num_epochs - 1
    images = batch["data"].to(device)
    patch = images[(..., *[slice(0, p) for p in runner.grid.patch_size])]  # the emulation runs on the patch
    n = runner.grid.num_cells  # a random mask at RandomMask's ratio, whatever the scheme
    cells = masking.random_mask(torch.rand(patch.shape[0], n, device=device), masking.num_masked(n, 0.6))
    grid_mask = cells.view(-1, *runner.grid.cells_per_axis)

    def forward_backward(forward):
        with autocast(device):
            out = forward()
        out.float().square().mean().backward()

    forward = runner.loop.forward  # compiled where nnU-Net compiles; a cell mask of None is the dense forward
    fns = {"step": lambda: runner.loop.train_step(batch, epoch), "on_step_end": lambda: scheme.on_step_end(epoch),
           "masked": lambda: forward_backward(lambda: forward(patch, grid_mask)),
           "dense": lambda: forward_backward(lambda: forward(patch, None))}
    if type(scheme).step is MaskedModelling.step:  # the default sequence: its parts can be timed one by one
        fns.update(default_step_parts(runner, images, epoch))
    parts = interleaved_medians(fns, args.steps, args.warmup, device)
    parts["emulation"] = parts.pop("masked") - parts.pop("dense")
    runner.loop.optimizer.zero_grad(set_to_none=True)
    return parts


def default_step_parts(runner: Stage1Runner, images: torch.Tensor, epoch: int) -> dict:
    """select_mask, loss (forward only) and, where the scheme has one, its teacher forward, as step calls them."""
    scheme, device = runner.scheme, runner.device
    mask = scheme.select_mask(images, epoch)
    with torch.no_grad(), autocast(device):
        prediction = runner.loop.forward(images, scheme.grid_mask(mask.cells))

    def loss():
        with torch.no_grad(), autocast(device):
            scheme.loss(images, prediction, mask, epoch)

    fns = {"select_mask": lambda: scheme.select_mask(images, epoch), "loss": loss}
    if hasattr(scheme, "teacher_scores"):
        fns["teacher"] = lambda: scheme.teacher_scores(images)
    return fns


def bench(trainer: nnUNetTrainer, batch: dict, args) -> list[Row]:
    """Build every row (memory), time them in turns, then end-to-end (--dataset) and our costs one by one."""
    release(trainer)  # its network is built again inside the supervised row's memory window
    progress = Progress(2 + 2 * len(args.schemes), "benchmark", stream=sys.stderr)
    progress.start("build + warm up: supervised")
    rows = [measured_build("supervised (nnUNetTrainer.train_step)", lambda: supervised_parts(trainer), batch, args)]
    progress.done()
    for name in args.schemes:
        progress.start(f"build + warm up: {name}")
        rows.append(measured_build(name, lambda name=name: scheme_parts(trainer, name, args.synthetic is not None),
                                   batch, args))
        progress.done()
    progress.start(f"timing every row, {args.steps} steps each, taking turns")
    medians = interleaved_medians({row.name: lambda row=row: row.step(row.batch) for row in rows}, args.steps, 0,
                                  trainer.device)  # warmed up in measured_build
    progress.done()
    for row in rows:
        row.step_ms = medians[row.name]
    for row in rows:
        if row.runner is not None:
            progress.start(f"our costs{' and end-to-end' if args.dataset is not None else ''}: {row.name}")
        if args.dataset is not None:
            batches = row.batches()
            try:
                row.e2e_its = iterations_per_s(row.step, batches, args.steps, args.warmup, trainer.device)
            finally:
                shutdown(batches)
        if row.runner is not None:
            row.parts = our_costs(row.runner, row.batch, args)
            progress.done()
    return rows
