"""The benchmark's report: the main table, our costs, the machine, as markdown."""
import contextlib
import math
import os
import platform
import shlex
from datetime import datetime
from importlib.metadata import version

import torch

from nnunet_anatomask.benchmark.rows import Row


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
