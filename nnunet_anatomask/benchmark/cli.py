"""The benchmark's command line: arguments, building nnU-Net's trainer for the plans, the Primus ratio table."""
import argparse
import difflib
import sys

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_anatomask.benchmark.explain import explain_masked_forward
from nnunet_anatomask.benchmark.measure import autocast, interleaved_medians
from nnunet_anatomask.benchmark.report import _fmt, report
from nnunet_anatomask.benchmark.rows import Row, bench
from nnunet_anatomask.benchmark.sources import SIZES, dataset_plans, first_batch, make_trainer, scratch_env, \
    synthetic_batch, synthetic_plans
from nnunet_anatomask.pretraining import masking
from nnunet_anatomask.pretraining.schemes import SCHEMES
from nnunet_anatomask.trainers.stage1 import Stage1Runner

DESCRIPTION = "Stage-1 cost against nnU-Net's own supervised train step, in one process, on the same device, patch and batch."


def scheme_name(name: str) -> str:
    """argparse type of --schemes: a registered scheme, else an error with a 'did you mean'."""
    if name in SCHEMES:
        return name
    close = difflib.get_close_matches(name, list(SCHEMES), n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    raise argparse.ArgumentTypeError(f"{name!r} is not a registered scheme.{hint} Known: {', '.join(SCHEMES)}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nnunet_anatomask.benchmark", description=DESCRIPTION,
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
    model, device = runner.model, runner.device
    images = batch["data"].to(device)
    n, cells = runner.grid.num_cells, runner.grid.cells_per_axis

    def encoder_step(ratio: float):
        mask = masking.random_mask(torch.rand(images.shape[0], n, device=device), round(ratio * n))
        with autocast(device):
            out = model.encode(images, mask.view(-1, *cells)).cells  # the encoder alone, on the kept tokens
        out.float().square().mean().backward()

    medians = interleaved_medians({r: (lambda r=r: encoder_step(r)) for r in ratios}, args.steps, args.warmup, device)
    runner.loop.optimizer.zero_grad(set_to_none=True)
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
