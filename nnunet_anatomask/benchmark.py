"""Stage-1 cost against nnU-Net's own supervised train step, in one process, on the same device, patch and batch.

    python -m nnunet_anatomask.benchmark --synthetic tiny --device cpu            # CI size, seconds on a CPU
    python -m nnunet_anatomask.benchmark --synthetic h100 --device cuda           # the reference size
    python -m nnunet_anatomask.benchmark --dataset 990 --configuration 3d_fullres  # real plans + data loading

Rows: nnU-Net's `nnUNetTrainer.train_step` on a fixed batch (compiled where nnU-Net compiles: CUDA with
nnUNet_compile unset or true), then one stage-1 optimiser step (`Stage1Runner.train_step`) per scheme in SCHEMES,
at the last epoch (AnatoMask's teacher runs, alpha = 0.5); a scheme whose loader crops are larger than the patch
(crop_scale, e.g. GL-MAE) gets a batch of that size. Every row is built and warmed up (--warmup steps)
inside its own memory window; then the rows take turns, step by step, for --steps steps each, and each reports
its median (the device synchronised after every step). Peak memory, over what was allocated before the row was
built: CUDA max_memory_allocated; CPU the peak resident set size (VmHWM). With --dataset also the end-to-end
it/s with nnU-Net's data loader (stage 1: stage1_batches) against the step-only it/s. A second table splits off,
per scheme and again taking turns, the costs that are ours: select_mask (of which AnatoMask's teacher forward),
loss + logged figures (both for schemes with the default step), on_step_end (teacher EMA) and the masked-forward
emulation (masked forward + backward minus the same network's dense forward + backward).
--explain runs torch._dynamo.explain on the masked model's forward (graph breaks) and checks that a new mask
does not recompile. Nothing is written outside a temporary folder except --output.
"""
import argparse
import contextlib
import ctypes
import difflib
import gc
import io
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import version
from time import perf_counter
from typing import Callable, Iterator, Optional

import torch
from batchgenerators.utilities.file_and_folder_operations import join, load_json
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import dummy_context, empty_cache

from nnunet_anatomask.pretraining import masking
from nnunet_anatomask.progress import Progress
from nnunet_anatomask.pretraining.schemes import SCHEMES, MaskingScheme
from nnunet_anatomask.trainers.stage1 import Stage1Runner
from nnunet_anatomask.trainers.stage1_data import crop_size, shutdown, stage1_batches


@dataclass(frozen=True)
class Size:
    patch: tuple[int, ...]
    features: tuple[int, ...]
    batch: int = 2


SIZES = {  # 3D PlainConvUNet, strides 1, 2, 2, ..., two convs per stage, instance norm (nnU-Net's default)
    "tiny": Size((32, 32, 32), (8, 16, 32, 64)),  # CI: ~0.1 s a step on 2 CPU cores
    "small": Size((64, 64, 64), (16, 32, 64, 128, 256)),  # seconds a step on a CPU
    "h100": Size((128, 128, 128), (32, 64, 128, 256, 320, 320)),  # the H100 reference
}
SYNTHETIC_DATASET = "Dataset999_BenchmarkSynthetic"


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


# ==================================================================== sources
def synthetic_plans(size: str) -> tuple[dict, dict]:
    """An nnU-Net plans dict (one 3d_fullres configuration) and dataset.json for a named size, in memory."""
    s, n = SIZES[size], len(SIZES[size].features)
    arch_kwargs = {
        "n_stages": n, "features_per_stage": list(s.features), "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * n, "strides": [[1, 1, 1]] + [[2, 2, 2]] * (n - 1),
        "n_conv_per_stage": [2] * n, "n_conv_per_stage_decoder": [2] * (n - 1), "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True}}
    config = {"data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
              "batch_size": s.batch, "patch_size": list(s.patch), "spacing": [1.0] * 3,
              "median_image_size_in_voxels": [2.0 * p for p in s.patch],
              "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False], "batch_dice": False,
              "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                               "arch_kwargs": arch_kwargs,
                               "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}
    plans = {"dataset_name": SYNTHETIC_DATASET, "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
             "original_median_spacing_after_transp": [1.0] * 3, "transpose_forward": [0, 1, 2],
             "original_median_shape_after_transp": [2 * p for p in s.patch], "transpose_backward": [0, 1, 2],
             "configurations": {"3d_fullres": config}, "experiment_planner_used": "ExperimentPlanner",
             "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {}}
    dataset_json = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "foreground": 1},
                    "numTraining": 0, "file_ending": ".nii.gz"}
    return plans, dataset_json


def dataset_plans(dataset: str, plans_name: str) -> tuple[dict, dict]:
    """Plans and dataset.json of a preprocessed dataset (nnUNet_preprocessed must be set)."""
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    folder = join(str(nnUNet_preprocessed), maybe_convert_to_dataset_name(dataset))
    return load_json(join(folder, plans_name + ".json")), load_json(join(folder, "dataset.json"))


@contextlib.contextmanager
def scratch_env(synthetic_config: dict = None):
    """nnUNet_results -> a temporary folder (trainer logs land there); for synthetic plans also a stand-in
    nnUNet_preprocessed holding one empty .b2nd file, so that nnUNetTrainer.initialize() can infer a dataset class."""
    saved = {k: os.environ.get(k) for k in ("nnUNet_results", "nnUNet_preprocessed")}
    with tempfile.TemporaryDirectory(prefix="anatomask_benchmark_") as tmp:
        os.environ["nnUNet_results"] = join(tmp, "results")
        if synthetic_config is not None:
            os.environ["nnUNet_preprocessed"] = join(tmp, "preprocessed")
            data = join(tmp, "preprocessed", SYNTHETIC_DATASET, synthetic_config["data_identifier"])
            os.makedirs(data)
            open(join(data, "stand_in.b2nd"), "w").close()
        try:
            yield
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def make_trainer(plans: dict, dataset_json: dict, configuration: str, fold, device: torch.device,
                 trainer_class: type = nnUNetTrainer) -> nnUNetTrainer:
    """nnU-Net's own trainer (nnUNetTrainer, or a Primus trainer), built and initialised as nnUNetv2_train does
    (its chatter swallowed)."""
    plans = {**plans, "continue_training": False}
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = trainer_class(plans=plans, configuration=configuration, fold=fold, dataset_json=dataset_json,
                                device=device)
        trainer.initialize()
    return trainer


def synthetic_batch(trainer: nnUNetTrainer) -> dict:
    """Random image [B, C, *patch] and int16 deep-supervision targets, as nnU-Net's loader hands them over."""
    patch, b = trainer.configuration_manager.patch_size, trainer.batch_size
    data = torch.randn(b, trainer.num_input_channels, *patch)
    labels = trainer.label_manager.num_segmentation_heads
    scales = trainer._get_deep_supervision_scales() or [[1] * len(patch)]  # None without deep supervision (Primus)
    target = [torch.randint(0, labels, (b, 1, *[round(p * s) for p, s in zip(patch, scale)]), dtype=torch.int16)
              for scale in scales]
    return {"data": data, "target": target if trainer.enable_deep_supervision else target[0]}


def first_batch(trainer: nnUNetTrainer) -> dict:
    """One batch of nnU-Net's own training data loader (real data, nnU-Net's augmentation)."""
    loader_tr, loader_val = trainer.get_dataloaders()
    try:
        return next(loader_tr)
    finally:
        shutdown(loader_tr)
        shutdown(loader_val)


def release(trainer: nnUNetTrainer) -> None:
    """Drop the trainer's network, optimiser and loss (initialize() builds them again)."""
    trainer.network = trainer.optimizer = trainer.lr_scheduler = trainer.loss = None
    trainer.was_initialized = False
    if hasattr(trainer, "training_stage"):  # nnUNetTrainer_warmup (Primus) keeps its optimiser per stage
        trainer.training_stage = None
    gc.collect()
    empty_cache(trainer.device)


# ==================================================================== measuring
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
    epoch, device = runner.num_epochs - 1, trainer.device
    step = lambda b: runner.train_step(b["data"].to(device, non_blocking=True), epoch)  # noqa: E731
    return (step, lambda: stage1_batches(trainer, scheme.crop_scale), runner,
            crop_batch(trainer, scheme.crop_scale, synthetic))


def our_costs(runner: Stage1Runner, batch: dict, args) -> dict:
    """ms of a stage-1 step and of its parts that are ours, called as train_step calls them, taking turns."""
    scheme, model, device, epoch = runner.scheme, runner.model, runner.trainer.device, runner.num_epochs - 1
    images = batch["data"].to(device)
    patch = images[(..., *[slice(0, p) for p in runner.grid.patch_size])]  # the emulation runs on the patch
    grid_mask = scheme.grid_mask(masking.random_mask(scheme.random_key(patch), scheme.n_masked(epoch)))

    def forward_backward(forward):
        with autocast(device):
            out = forward()
        out.float().square().mean().backward()

    dense_network = torch.compile(model.network) if runner.trainer._do_i_compile() else model.network
    fns = {"step": lambda: runner.train_step(images, epoch), "on_step_end": lambda: scheme.on_step_end(epoch),
           "masked": lambda: forward_backward(lambda: runner.forward(patch, grid_mask)),
           "dense": lambda: (model.set_mask(None), forward_backward(lambda: dense_network(patch)))}
    if type(scheme).step is MaskingScheme.step:  # the default sequence: its parts can be timed one by one
        fns.update(default_step_parts(runner, images, epoch))
    parts = interleaved_medians(fns, args.steps, args.warmup, device)
    parts["emulation"] = parts.pop("masked") - parts.pop("dense")
    runner.optimizer.zero_grad(set_to_none=True)
    return parts


def default_step_parts(runner: Stage1Runner, images: torch.Tensor, epoch: int) -> dict:
    """select_mask, loss (forward only) and, where the scheme has one, its teacher forward, as step calls them."""
    scheme, device = runner.scheme, runner.trainer.device
    cell_mask = scheme.select_mask(images, epoch)
    with torch.no_grad(), autocast(device):
        prediction = runner.forward(images, scheme.grid_mask(cell_mask))

    def loss():
        with torch.no_grad(), autocast(device):
            scheme.loss(images, prediction, cell_mask, epoch)

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


# ==================================================================== torch.compile check
def explain_masked_forward(trainer: nnUNetTrainer, images: torch.Tensor) -> list[str]:
    """torch._dynamo.explain of the masked model's forward (with and without features), and the graphs compiled
    over three masks."""
    runner = Stage1Runner(trainer, SCHEMES["RandomMask"])
    runner.build()
    images = images.to(trainer.device)
    masks = [runner.scheme.grid_mask(runner.scheme.select_mask(images, 0)) for _ in range(3)]
    lines, graph_counts = [], []
    for features in (False, True):  # the plain reconstruction, and the features a scheme may ask for
        torch._dynamo.reset()
        result = torch._dynamo.explain(runner.model)(images, masks[0], features=features)
        graph_counts.append(result.graph_count)
        lines += explain_lines(result, f"torch._dynamo.explain(masked model)(images, cell_mask, features={features})")
    torch._dynamo.reset()
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    compiled = torch.compile(runner.model, backend=counting_backend)
    for mask in masks:
        compiled(images, mask)
    lines.append(f"torch.compile over 3 different masks: {len(graphs)} graph(s) compiled "
                 f"({'no recompilation' if len(graphs) == graph_counts[0] else 'RECOMPILED on a new mask'})")
    torch._dynamo.reset()
    return lines


def explain_lines(result, what: str) -> list[str]:
    """A summary line of a torch._dynamo.explain result and one line per graph break."""
    lines = [f"{what}: {result.graph_count} graph(s), {result.graph_break_count} graph break(s), "
             f"{result.op_count} ops"]
    for reason in result.break_reasons:
        frame = reason.user_stack[-1] if reason.user_stack else None
        where = f" at {frame.filename}:{frame.lineno}" if frame is not None else ""
        lines.append(f"  break: {reason.reason}{where}")
    return lines


# ==================================================================== report
def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def main_table(rows: list[Row]) -> list[str]:
    base = rows[0]
    lines = ["| step | ms/step | × supervised | peak memory MiB | × supervised | step-only it/s | end-to-end it/s "
             "| end-to-end / step-only |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        step_its = 1e3 / r.step_ms
        lines.append(f"| {r.name} | {_fmt(r.step_ms)} | {_fmt(r.step_ms / base.step_ms, 2)} | {_fmt(r.peak_mib, 0)} "
                     f"| {_fmt(r.peak_mib / base.peak_mib if base.peak_mib > 0 else float('nan'), 2)} "
                     f"| {_fmt(step_its, 2)} | {_fmt(r.e2e_its, 2)} | {_fmt(r.e2e_its / step_its, 2)} |")
    return lines


def costs_table(rows: list[Row]) -> list[str]:
    columns = [("select_mask", "select_mask"), ("teacher", "of which teacher forward"),
               ("loss", "loss + logged figures (forward)"), ("on_step_end", "on_step_end (EMA)"),
               ("emulation", "emulation")]
    lines = ["| scheme | stage-1 step ms | " + " | ".join(f"{title} ms (% of step)" for _, title in columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    for r in rows[1:]:
        step = r.parts["step"]
        cells = [f"{_fmt(r.parts[k], 2)} ({_fmt(100 * r.parts[k] / step)} %)" if k in r.parts else "–"
                 for k, _ in columns]
        lines.append(f"| {r.name} | {_fmt(step)} | " + " | ".join(cells) + " |")
    return lines


def machine_lines(device: torch.device) -> list[str]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none used"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [f"- machine: {cpu}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}; GPU: {gpu}",
            f"- torch {torch.__version__}, nnunetv2 {version('nnunetv2')}, Python {platform.python_version()}",
            f"- load average (1, 5, 15 min) at the end: {load}"]


def report(args, argv: list[str], header: list[str], rows: list[Row], explain: list[str],
           ratios: list[str] = ()) -> str:
    text = [f"## Stage-1 benchmark: {header[0]}", "",
            f"- command: `python -m nnunet_anatomask.benchmark {shlex.join(argv)}`",
            f"- date: {datetime.now().astimezone().isoformat(timespec='seconds')}", *header[1:],
            *machine_lines(torch.device(args.device)),
            f"- ms/step: median of {args.steps} steps per row, the rows taking turns step by step, after "
            f"{args.warmup} warm-up steps + 1 step for the peak memory; device synchronised after each step", "",
            *main_table(rows), "",
            "Our costs: the stage-1 step and each part that is ours, called as the step calls it (loss: forward "
            "only), taking turns (median, same steps); emulation = masked forward + backward minus the same "
            "network's dense forward + backward:", "", *costs_table(rows)]
    if ratios:
        text += ["", *ratios]
    if explain:
        text += ["", "torch.compile check:", "", *[f"    {line}" for line in explain]]
    return "\n".join(text) + "\n"


# ==================================================================== command line
def scheme_name(name: str) -> str:
    """argparse type of --schemes: a registered scheme, else an error with a 'did you mean'."""
    if name in SCHEMES:
        return name
    close = difflib.get_close_matches(name, list(SCHEMES), n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    raise argparse.ArgumentTypeError(f"{name!r} is not a registered scheme.{hint} Known: {', '.join(SCHEMES)}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nnunet_anatomask.benchmark", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic", choices=sorted(SIZES),
                        help="in-memory plans of a named size (" + "; ".join(
                            f"{k}: patch {v.patch}, widths {v.features}" for k, v in SIZES.items()) + "), random batch")
    source.add_argument("--dataset", help="a preprocessed dataset (name or id; needs nnUNet_preprocessed)")
    p.add_argument("--configuration", default="3d_fullres", help="configuration of the plans, with --dataset")
    p.add_argument("--plans", default="nnUNetPlans", help="plans identifier, with --dataset")
    p.add_argument("--fold", default="0", help="fold whose training cases feed the loaders, with --dataset")
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES), type=scheme_name, metavar="SCHEME",
                   help="schemes to time against nnU-Net's supervised step (registered: " + ", ".join(SCHEMES) + ")")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement (median)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, allocator)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"),
                   help="device to time on")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--explain", action="store_true", help="torch._dynamo.explain the masked forward")
    p.add_argument("--primus", choices=("S", "B", "M", "L"),
                   help="time nnU-Net's Primus of this size (its own trainer as the supervised row; stage 1 by token "
                        "dropping) and the encoder at mask ratios 0, 0.5, 0.75, instead of the plans' CNN")
    p.add_argument("--autocast", choices=("fp16", "bf16"), default="fp16",
                   help="autocast dtype on CUDA, for nnU-Net's step and ours alike (nnU-Net's is fp16)")
    p.add_argument("--output", help="also write the report (markdown) to this file")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        p.error("--steps and --threads must be >= 1, --warmup >= 0")
    args.fold = args.fold if args.fold == "all" else int(args.fold)
    return args


def run(args) -> tuple[list[str], list[Row], list[str], list[str]]:
    """Build nnU-Net's trainer for the plans, then time the supervised step and every scheme's step."""
    device = torch.device(args.device)
    if args.synthetic:
        plans, dataset_json = synthetic_plans(args.synthetic)
        configuration, synthetic = "3d_fullres", plans["configurations"]["3d_fullres"]
    else:
        plans, dataset_json = dataset_plans(args.dataset, args.plans)
        configuration, synthetic = args.configuration, None
    with scratch_env(synthetic):
        trainer = make_trainer(plans, dataset_json, configuration, args.fold, device, trainer_class(args))
        batch = synthetic_batch(trainer) if synthetic else first_batch(trainer)
        if device.type == "cuda":  # as nnU-Net's loader hands batches over (pin_memory)
            batch = {k: [t.pin_memory() for t in v] if isinstance(v, list) else v.pin_memory() for k, v in
                     batch.items()}
        header = [f"{args.synthetic or plans['dataset_name']} {configuration} ({plans['plans_name']})",
                  f"- network: {network_line(trainer, args)}; patch {list(trainer.configuration_manager.patch_size)}, "
                  f"batch {tuple(batch['data'].shape)}; device {device}, torch.compile "
                  f"{'on' if trainer._do_i_compile() else 'off'} (nnU-Net's rule), autocast "
                  f"{args.autocast if device.type == 'cuda' else 'off'}"]
        rows = bench(trainer, batch, args)
        explain = explain_masked_forward(trainer, batch["data"]) if args.explain else []
        ratios = encoder_at_ratios(next(r.runner for r in rows if r.runner), batch, args) if args.primus else []
    return header, rows, explain, ratios


def trainer_class(args) -> type:
    """nnU-Net's nnUNetTrainer, or with --primus its nnUNet_Primus_<size>_Trainer (the ViT and its recipe)."""
    if not args.primus:
        return nnUNetTrainer
    from nnunetv2.training.nnUNetTrainer.primus import primus_trainers
    return getattr(primus_trainers, f"nnUNet_Primus_{args.primus}_Trainer")


def network_line(trainer: nnUNetTrainer, args) -> str:
    if args.primus:
        return f"Primus {args.primus} (nnUNet_Primus_{args.primus}_Trainer: token size 8³)"
    cm = trainer.configuration_manager
    kwargs = cm.network_arch_init_kwargs
    return (f"{cm.network_arch_class_name.split('.')[-1]}, {kwargs['n_stages']} stages, features "
            f"{kwargs['features_per_stage']}")


def encoder_at_ratios(runner: Stage1Runner, batch: dict, args, ratios=(0.0, 0.5, 0.75)) -> list[str]:
    """Stage-1 encoder forward + backward on the same patch at several mask ratios (token dropping: its cost
    should fall with 1 - ratio), taking turns."""
    model, device = runner.model, runner.trainer.device
    images = batch["data"].to(device)
    n = runner.grid.num_cells

    def encoder_step(ratio: float):
        keep = torch.rand(images.shape[0], n, device=device).argsort(1)[:, : n - round(ratio * n)]
        with autocast(device):
            out = model.encode(model.embed(images), keep)
        out.float().square().mean().backward()

    medians = interleaved_medians({r: (lambda r=r: encoder_step(r)) for r in ratios}, args.steps, args.warmup, device)
    runner.optimizer.zero_grad(set_to_none=True)
    lines = ["Primus encoder at mask ratios (forward + backward of the encoder on the kept tokens):", "",
             "| mask ratio | tokens seen | encoder ms | × ratio 0 | 1 - ratio |", "|---:|---:|---:|---:|---:|"]
    for r in ratios:
        lines.append(f"| {r:.2f} | {n - round(r * n)} of {n} | {_fmt(medians[r], 2)} | "
                     f"{_fmt(medians[r] / medians[ratios[0]], 2)} | {1 - r:.2f} |")
    return lines


def main(argv: list[str] = None) -> str:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    threads, amp = torch.get_num_threads(), torch.get_autocast_dtype("cuda")
    torch.set_num_threads(args.threads or threads)
    torch.set_autocast_dtype("cuda", torch.bfloat16 if args.autocast == "bf16" else torch.float16)  # both steps
    try:
        text = report(args, argv, *run(args))
    finally:
        torch.set_num_threads(threads)
        torch.set_autocast_dtype("cuda", amp)
    print(text, flush=True)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    return text


if __name__ == "__main__":
    main()
