"""Stage 1 under DDP on the CPU: real trainer objects in spawned gloo processes (tests/trainers/test_stage1_ddp.py).

Batches and masks are fixed for the equality checks: every rank feeds its slice of one fixed global batch, and
the schemes' random keys are a hash of each sample's voxels and of the call's index in the run (ours), so one
process over the concatenated batch draws exactly the masks the ranks draw.
"""
import math
import os
import types
import uuid

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from nnunet_anatomask.pretraining import losses
from nnunet_anatomask.pretraining.schemes.base import Picture, StepOutput
from nnunet_anatomask.pretraining.schemes.random_mask import RandomMaskScheme
from nnunet_anatomask.trainers import stage1, stage1_ddp
from nnunet_anatomask.trainers.registry import SCHEME_TRAINERS
from nnunet_anatomask.trainers.stage1_loop import Stage1Loop
from nnunet_anatomask.trainers.stage1_data import stage1_batches

PATCH = (32, 32, 32)  # the demo3d plans' patch
GLOBAL_BATCH = 2  # the demo3d plans' batch size: nnU-Net splits it into 1 per rank
EPOCHS = [0, 1, 2, 2]  # one step each, of a 3-epoch run: AnatoMask's teacher chooses cells from epoch 1
RESUME_AT = 2  # the checkpoint is written after this many steps
# Two ranks vs one process compute the same sums in another order (a conv's weight gradient over 32^3 voxels is
# one sum over the batch in one process, two sums added by the all-reduce on two ranks): float32 rounding, up to
# ~1e-5 of the largest gradient, which the following steps carry on. With SGD a gradient difference d moves a
# weight by lr * d, so the weights agree to a small fraction of their change; a rank's gradient not averaged
# (or averaged twice) would make that fraction ~1. (With AdamW, weights whose gradient is pure rounding noise,
# e.g. conv biases that the following instance norm cancels, step by +-lr on the noise's sign: AdamW runs are
# compared between ranks only, where they are bitwise equal.)
RELATIVE_TOLERANCE = 1e-3  # of the largest weight change of the run
SGD_LR = 1e-3  # every weight moves measurably, and rounding differences grow little over the steps


class HeadAndBuffers(RandomMaskScheme):
    """RandomMask plus what other schemes hold (not registered: no own ``name``): a trained head on decoder
    features predicting each cell's error, a float buffer updated from each rank's batch (EMA of the batch's mean
    error), and an integer buffer (a step counter)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.head = nn.Linear(self.student.decoder_channels[-1], 1)
        self.register_buffer("error_ema", torch.zeros(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._batch_error = None

    def step(self, batch, model, epoch):
        images = batch["data"]
        mask = self.select_mask(images, epoch).cells
        out = model(images, self.grid_mask(mask), features=True)
        errors = losses.per_cell_error(out.reconstruction, images, self.grid)
        predicted = self.head(self.grid.patchify(out.decoder_features[-1]).mean(-1)).squeeze(-1)
        loss = losses.masked_mean(errors, mask) + (predicted - errors.detach()).pow(2).mean()
        self._batch_error = errors.detach().mean()
        return StepOutput(loss, {}, Picture(images, mask, out.reconstruction.detach(), {}))

    def on_step_end(self, epoch):
        self.error_ema.mul_(0.9).add_(0.1 * self._batch_error)
        self.steps += 1


def spawn(world_size: int, tmp: str, fn, *args) -> None:
    """Run fn(rank, *args) in `world_size` processes under a gloo process group."""
    rendezvous = os.path.join(tmp, f"rendezvous_{fn.__name__}_{uuid.uuid4().hex}")
    mp.spawn(_rank_main, args=(world_size, rendezvous, fn, args), nprocs=world_size, join=True)


def _rank_main(rank: int, world_size: int, rendezvous: str, fn, args) -> None:
    """One process: a gloo group when there are several (a single process runs without one, as nnU-Net's
    -num_gpus 1), then fn."""
    torch.set_num_threads(1)  # one summation order in every process
    if world_size == 1:
        return fn(rank, *args)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        fn(rank, *args)
    finally:
        dist.destroy_process_group()


def deterministic_keys(scheme) -> None:
    """Replace the scheme's random keys [B, N] by a hash of each sample, of the step and of the call's index in
    the step (``scheme.key_step``, set by ``train_steps``), so a resumed run draws what the first run drew."""
    scheme.key_step, scheme.key_calls = 0, 0

    def random_key(self, images):
        self.key_calls += 1
        voxels = images.flatten(1)[:, : self.grid.num_cells].double()
        phase = self.key_step * 7.1 + self.key_calls * 78.233
        return torch.frac(torch.sin(voxels * 12.9898 + phase) * 43758.5453).float()

    scheme.random_key = types.MethodType(random_key, scheme)


def fixed_batch(step: int) -> torch.Tensor:
    """The global batch of a step: [GLOBAL_BATCH, 1, *PATCH], the same in every process."""
    generator = torch.Generator().manual_seed(1000 + step)
    return torch.randn(GLOBAL_BATCH, 1, *PATCH, generator=generator)


def make_trainer(planned: dict, scheme: str, results: str):
    """A scheme trainer exactly as get_trainer_from_args builds it (fold 'all', CPU; 3-epoch stage 1)."""
    os.environ.update({"nnUNet_raw": planned["raw"], "nnUNet_preprocessed": planned["preprocessed"],
                       "nnUNet_results": results, "nnUNet_n_proc_DA": "0",
                       "nnUNet_anatomask_pretrain_epochs": str(max(EPOCHS) + 1)})
    plans = dict(planned["plans"], continue_training=False)
    name = "RandomMask" if scheme == "HeadAndBuffers" else scheme
    trainer = SCHEME_TRAINERS[f"nnUNetTrainer{name}"](plans=plans, configuration="3d_fullres", fold="all",
                                                        dataset_json=planned["dataset_json"],
                                                        device=torch.device("cpu"))
    if scheme == "HeadAndBuffers":
        trainer.stage1.scheme_class = HeadAndBuffers
    stage1.prepare_trainer(trainer)
    return trainer


def build_runner(planned: dict, scheme: str, results: str):
    """The trainer's stage-1 runner, built (under DDP when a process group runs), with deterministic keys. Rank 0
    initialises from a fixed seed (reproducible figures), other ranks from others (DDP must broadcast rank 0's)."""
    runner = make_trainer(planned, scheme, results).stage1
    torch.manual_seed(1234 + stage1_ddp.rank())
    runner.build()
    deterministic_keys(runner.scheme)
    return runner


def my_slice(batch: torch.Tensor) -> torch.Tensor:
    """This rank's samples of the global batch (nnU-Net's split: rank r gets sample r when the batch is 2)."""
    world, r = stage1_ddp.world_size(), stage1_ddp.rank()
    return batch[r::world] if world > 1 else batch


def train_steps(runner, first: int, last: int) -> list[float]:
    """Steps first..last-1 of the fixed schedule (EPOCHS) on the fixed batches; returns the rank's losses."""
    out = []
    for step in range(first, last):
        runner.scheme.key_step, runner.scheme.key_calls = step, 0
        out.append(runner.loop.train_step({"data": my_slice(fixed_batch(step))}, EPOCHS[step]).loss.item())
    return out


def state(loop: Stage1Loop) -> dict:
    """Everything a step changes: student, mask tokens, scheme state (teacher, heads, buffers), optimiser."""
    return {"network": {k: v.clone() for k, v in loop.model.network.state_dict().items()},
            "mask_tokens": loop.model.extra_state_dict(),
            "scheme": {k: v.clone() for k, v in loop.scheme.state_dict().items()},
            "optimizer": loop.optimizer.state_dict()}


def max_difference(a, b) -> float:
    """Largest absolute difference between two nested states of the same structure."""
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape
        return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return max([max_difference(a[k], b[k]) for k in a] or [0.0])
    if isinstance(a, (list, tuple)):
        return max([max_difference(x, y) for x, y in zip(a, b)] or [0.0])
    assert a == b
    return 0.0


# --- what each process of a test runs ----------------------------------------------------------------------
def use_optimiser(loop: Stage1Loop, optimiser: str) -> None:
    """'adamw': the runner's own; 'sgd': plain SGD over the same parameters, where a gradient difference d moves a
    weight by lr * d (AdamW moves near-zero-gradient weights by ~lr whatever their rounding noise)."""
    if optimiser == "sgd":
        loop.optimizer = torch.optim.SGD([p for g in loop.optimizer.param_groups for p in g["params"]], lr=SGD_LR)


def save_result(loop: Stage1Loop, losses: list[float], batch_size: int, path: str) -> None:
    torch.save({"state": state(loop), "losses": losses, "batch_size": batch_size}, path)


def run_through(rank: int, planned: dict, schemes: list[str], out: str) -> None:
    """For each scheme and optimiser, from a fresh build: <opt>_initial.pth, RESUME_AT steps, <opt>_mid.pth
    (rank 0 writes), the other steps; each rank's final state to through_<opt>_rank<r>.pt."""
    for scheme in schemes:
        folder = os.path.join(out, scheme)
        os.makedirs(folder, exist_ok=True)
        for optimiser in ("adamw", "sgd"):
            runner = build_runner(planned, scheme, os.path.join(out, "results"))
            use_optimiser(runner.loop, optimiser)
            runner.save(os.path.join(folder, f"{optimiser}_initial.pth"))
            losses = train_steps(runner, 0, RESUME_AT)
            runner.save(os.path.join(folder, f"{optimiser}_mid.pth"))
            losses += train_steps(runner, RESUME_AT, len(EPOCHS))
            save_result(runner.loop, losses, runner.trainer.batch_size,
                        os.path.join(folder, f"through_{optimiser}_rank{rank}.pt"))


def run_from(rank: int, planned: dict, schemes: list[str], out: str, jobs: list[tuple[str, str]]) -> None:
    """For each scheme and (optimiser, start) job, from a fresh build: load <opt>_<start>.pth (as --c does), the
    remaining steps; final state to from_<start>_<opt>_rank<r>.pt."""
    for scheme in schemes:
        folder = os.path.join(out, scheme)
        for optimiser, start in jobs:
            runner = build_runner(planned, scheme, os.path.join(out, "results"))
            use_optimiser(runner.loop, optimiser)
            runner.load(os.path.join(folder, f"{optimiser}_{start}.pth"))
            losses = train_steps(runner, 0 if start == "initial" else RESUME_AT, len(EPOCHS))
            save_result(runner.loop, losses, runner.trainer.batch_size,
                        os.path.join(folder, f"from_{start}_{optimiser}_rank{rank}.pt"))


def draw_twice(rank: int, planned: dict, out: str) -> None:
    """What each rank draws after reseed_ranks from one shared RNG state, twice: a real stage-1 batch (nnU-Net's
    loader and augmentation) and a RandomMask mask."""
    runner = build_runner(planned, "RandomMask", os.path.join(out, "results"))
    del runner.scheme.random_key  # the scheme's own random keys
    stage1_ddp.unpack_dataset(runner.trainer)
    batches = stage1_batches(runner.trainer)
    draws = []
    for _ in range(2):
        torch.manual_seed(5)
        np.random.seed(5)  # every rank in the same state, as after loading one checkpoint
        stage1_ddp.reseed_ranks(runner.device)
        images = next(batches)["data"]
        mask = runner.scheme.select_mask(torch.zeros(1, 1, *PATCH), 0).cells
        draws.append({"images": images, "mask": mask})
    torch.save({"draws": draws, "batch_size": runner.trainer.batch_size}, os.path.join(out, f"draws_rank{rank}.pt"))


def two_ranks(rank: int, planned: dict, schemes: list[str], out: str) -> None:
    """Everything the tests run on two ranks from scratch, in one pair of processes (start-up is the cost)."""
    run_through(rank, planned, schemes, out)
    draw_twice(rank, planned, out)


# --- the same on a tiny model, without a trainer (tests/trainers/test_ddp_tiny.py, default suite) ------------
TINY_PATCH = (16, 16, 16)


def tiny_batch(step: int, size: int = GLOBAL_BATCH, crop_scale: float = 1.0) -> torch.Tensor:
    """The global batch of a tiny run's step, crops of crop_scale x the patch (what stage1_batches loads)."""
    generator = torch.Generator().manual_seed(2000 + step)
    return torch.randn(size, 1, *(math.ceil(p * crop_scale) for p in TINY_PATCH), generator=generator)


def tiny_run(rank: int, scheme_name: str, optimiser: str, out: str) -> None:
    """The runner's train_step on a tiny model, under DDP when a process group runs; every rank initialises from
    its own seed (rank 0 from seed 0, as the single process), so DDP's broadcast must make them equal."""
    from nnunet_anatomask.pretraining.schemes import SCHEMES
    from tests.pretraining.schemes.conftest import tiny_model

    torch.manual_seed(rank)
    model = tiny_model()
    scheme_class = HeadAndBuffers if scheme_name == "HeadAndBuffers" else SCHEMES[scheme_name]
    scheme = scheme_class(model, model.grid, total_epochs=max(EPOCHS) + 1)
    loop = Stage1Loop(model, scheme, torch.device("cpu"), scheme.config.recipe(scheme.name))  # DDP: model + scheme
    global_batch = max(GLOBAL_BATCH, scheme.min_batch * stage1_ddp.world_size())  # GL-MAE: 2 views per rank
    use_optimiser(loop, optimiser)
    deterministic_keys(scheme)
    losses = []
    for step, epoch in enumerate(EPOCHS):
        scheme.key_step, scheme.key_calls = step, 0
        batch = tiny_batch(step, global_batch, scheme.config.crop_scale)
        losses.append(loop.train_step({"data": my_slice(batch)}, epoch).loss.item())
    save_result(loop, losses, global_batch // stage1_ddp.world_size(),
                os.path.join(out, f"tiny_{scheme_name}_{optimiser}_{stage1_ddp.world_size()}_rank{rank}.pt"))


def buffers_run(rank: int, out: str) -> None:
    """sync_buffers_ on a module whose buffers differ per rank."""
    from nnunet_anatomask.pretraining.distributed import sync_buffers_

    module = nn.Module()
    module.register_buffer("float32", torch.full((3,), float(rank + 1)))
    module.register_buffer("float64", torch.tensor([10.0 * rank], dtype=torch.float64))
    module.register_buffer("counter", torch.tensor(rank + 7))
    sync_buffers_(module)
    torch.save(dict(module.named_buffers()), os.path.join(out, f"buffers_rank{rank}.pt"))


def tiny_two_ranks(rank: int, schemes: list[str], out: str) -> None:
    """Everything test_ddp_tiny.py runs on two ranks, in one pair of processes (start-up is the cost)."""
    buffers_run(rank, out)
    for scheme in schemes:
        tiny_run(rank, scheme, "sgd", out)


def paper_schemes_two_ranks(rank: int, schemes: list[str], out: str) -> None:
    """The registered schemes with heads, teachers or buffers, each on two ranks with the runner's AdamW; then
    AMLP's choice of the lesion-like cluster on rank-specific clusterings."""
    for scheme in schemes:
        tiny_run(rank, scheme, "adamw", out)
    amlp_cluster_choice(rank, out)


# Per rank: 64 cells, how many in cluster 1, and the mean cluster-space coordinate of cluster 1's and cluster 0's
# cells. Alone, rank 0 would take cluster 1 as the smaller (8 < 56) and as the more focal (2.0 > -0.2), rank 1
# cluster 0 as the smaller (20 < 44) and as the more focal (1.0 > -0.5). Over both ranks cluster 1 is the smaller
# (52 < 76) and cluster 0 the more focal (8.8 / 76 = 0.116 > -6 / 52 = -0.115): for each rule one rank alone
# would choose otherwise.
AMLP_RANK_CLUSTERS = {0: (8, 2.0, -0.2), 1: (44, -0.5, 1.0)}


def amlp_rank_points(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank ``rank``'s clustering of one 64-cell sample: points [1, 64, 3] and assignment [1, 64]."""
    n_one, mean_one, mean_zero = AMLP_RANK_CLUSTERS[rank]
    assignment = (torch.arange(64) < n_one).long()[None]
    points = torch.where(assignment[..., None] == 1, mean_one, mean_zero).expand(1, 64, 3).clone()
    return points, assignment


def amlp_cluster_choice(rank: int, out: str) -> None:
    """Each feature kind's lesion-like cluster index from this rank's clustering (amlp/categories.lesion_like: the
    most focal cluster for blob features, the smallest for intensity features)."""
    from nnunet_anatomask.pretraining.schemes.amlp import categories

    points, assignment = amlp_rank_points(rank)
    chosen = {}
    for features in ("blob", "intensity"):
        index, lesion_like = categories.lesion_like(points, assignment, 2, 1, most_focal=features == "blob")
        chosen[features] = (index.item(), lesion_like)
    torch.save(chosen, os.path.join(out, f"amlp_choice_{stage1_ddp.world_size()}_rank{rank}.pt"))
