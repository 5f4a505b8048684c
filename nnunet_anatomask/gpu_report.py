"""``bash scripts/gpu_check.sh``: everything a GPU machine should measure once, in one command and one results
file, within a time limit (docs/performance.md).

    python -m nnunet_anatomask.gpu_report [--size gpu|tiny] [--device cuda|cpu] [--output FILE]
        [--schemes S ...] [--limit-s 450]

Sections, in this order, each a process of its own with its own time cap, all under one deadline (``--limit-s``;
a section that would start with less than its minimum left is listed as skipped, never half-written):

1. data: generated volumes planned by nnU-Net twice, ``ExperimentPlanner`` (3d_fullres PlainConvUNet) and
   ``nnUNetPlannerResEncL`` (ResEnc-L, sharing the first plans' preprocessed data when its spacing and
   normalisation are the same).
2. per autocast dtype (bf16, fp16; on a CPU autocast is off, one pass) and network (PlainConvUNet, ResEnc-L, Primus-M
   on the first plans): ``python -m nnunet_anatomask.benchmark --dataset`` (every scheme's stage-1 step against
   nnU-Net's step, compiled where nnU-Net compiles, peak memory, end-to-end against step-only with nnU-Net's loader).
3. end-to-end against step-only over ``e2e_steps`` iterations (a few hundred on a GPU) with nnU-Net's data loading,
   for nnU-Net's step, RandomMask and AnatoMask.
4. a tiny end-to-end run of each scheme: ``nnUNetv2_train`` (stage 1, stage 2, nnU-Net's validation), all schemes
   side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional, Sequence

DATASET_ID, DATASET = 996, "Dataset996_GpuCheck"
RESENC_L = "nnUNetResEncUNetLPlans"


@dataclass(frozen=True)
class CheckSize:
    shape: tuple           # generated volume shape (z, y, x), 1 mm: the planner's median shape
    cases: int
    steps: int             # timed steps per benchmark row
    warmup: int
    e2e_steps: int         # iterations of the end-to-end comparison
    primus: str            # Primus size for the ViT rows
    run_iterations: int    # iterations per stage of the tiny end-to-end runs
    processes: int         # nnU-Net's preprocessing processes
    cap_scale: float = 1.0  # section time caps x this (the CPU path: a shared 2-core CPU is slow)


SIZES = {
    # 128^3 volumes at 1 mm: nnU-Net 2.8.1 plans them as 3d_fullres PlainConvUNet 128^3, batch 2, and ResEnc-L
    # 128^3, batch 3 (planned on this project's CPU machine, docs/performance.md)
    "gpu": CheckSize((128, 128, 128), 6, 10, 3, 200, "M", 5, 8),
    "tiny": CheckSize((16, 16, 16), 5, 1, 0, 2, "S", 2, 1, 10.0),  # the CPU path; 5 cases: nnU-Net's 5-fold split
}


@dataclass
class Section:
    title: str
    args: list
    cap_s: float           # the most this section may take
    min_s: float           # not started with less left
    env: Optional[dict] = None


class Check:
    """Runs the sections under one deadline and writes one markdown file."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.size = args, SIZES[args.size]
        self.deadline = time.monotonic() + args.limit_s
        self.work = tempfile.mkdtemp(prefix="anatomask_gpu_check_")
        self.roots = {k: os.path.join(self.work, k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
        self.lines: list[str] = []

    def env(self, training: bool = True) -> dict:
        """The caller's environment with this check's nnU-Net roots; on the CPU one process and, when training,
        no augmentation workers (as our CPU tests; nnU-Net's planning breaks with that setting)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_anatomask_")}
        env.update(self.roots, PYTHONUNBUFFERED="1")
        if self.args.device == "cpu":
            env.update(nnUNet_def_n_proc="1", **({"nnUNet_n_proc_DA": "0"} if training else {}))
        return env

    def run(self, section: Section) -> str:
        """Run one section if its minimum fits before the deadline; returns its status line."""
        left = self.deadline - time.monotonic()
        if left < section.min_s:
            return f"skipped: {left:.0f} s left before the limit, it needs at least {section.min_s:.0f} s"
        cap = min(section.cap_s * self.size.cap_scale, left)
        start = time.monotonic()
        proc = subprocess.Popen([str(a) for a in section.args], env=section.env or self.env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=cap)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the section and every process it started (tiny runs)
            stdout, stderr = proc.communicate()
            self.lines += ["", f"### {section.title}: stopped at its time cap ({cap:.0f} s)", "", "```",
                           (stdout + stderr)[-3000:], "```"]
            return f"stopped after {cap:.0f} s (its cap)"
        took = time.monotonic() - start
        if proc.returncode != 0:
            self.lines += ["", f"### {section.title}: FAILED (exit {proc.returncode})", "", "```",
                           (stdout + stderr)[-4000:], "```"]
            return f"failed (exit {proc.returncode}) after {took:.0f} s"
        self.lines += ["", f"### {section.title} ({took:.0f} s)", "", stdout.strip()]
        return f"done in {took:.0f} s"

    # --- sections -------------------------------------------------------------------------------------------
    def data_section(self) -> Section:
        return Section("data: generated volumes, nnU-Net's plans", [
            sys.executable, "-m", "nnunet_anatomask.gpu_report", "--prepare", self.args.size], 240, 20,
                       self.env(training=False))

    def benchmark_sections(self) -> list[Section]:
        s, py = self.size, sys.executable
        dtypes = self.args.dtypes if self.args.device == "cuda" else ["off"]
        nets = [("PlainConvUNet (nnUNetPlans 3d_fullres)", ["--plans", "nnUNetPlans"]),
                ("ResEnc-L (nnUNetResEncUNetLPlans 3d_fullres)", ["--plans", RESENC_L]),
                (f"Primus-{s.primus} (nnU-Net's Primus trainer on nnUNetPlans)", ["--plans", "nnUNetPlans",
                                                                                  "--primus", s.primus])]
        sections = []
        for dtype in dtypes:
            for title, extra in nets:
                amp = ["--autocast", dtype] if dtype != "off" else []
                sections.append(Section(f"benchmark, autocast {dtype}: {title}", [
                    py, "-m", "nnunet_anatomask.benchmark", "--dataset", DATASET_ID, "--fold", "all",
                    "--device", self.args.device, "--steps", s.steps, "--warmup", s.warmup, "--schemes",
                    *self.args.schemes, *amp, *extra], 75, 30))
        return sections

    def e2e_section(self) -> Section:
        s = self.size
        schemes = [x for x in ("RandomMask", "AnatoMask") if x in self.args.schemes] or self.args.schemes[:1]
        return Section(f"end-to-end against step-only, {s.e2e_steps} iterations with nnU-Net's data loading "
                       f"(PlainConvUNet)", [
                           sys.executable, "-m", "nnunet_anatomask.benchmark", "--dataset", DATASET_ID,
                           "--fold", "all", "--device", self.args.device, "--steps", s.e2e_steps, "--warmup", s.warmup,
                           "--schemes", *schemes], 120, 40)

    def runs_section(self) -> Section:
        return Section(f"tiny end-to-end run of each scheme ({', '.join(self.args.schemes)}; stage 1 + stage 2 of "
                       f"{self.size.run_iterations} iterations, nnU-Net's validation; side by side)", [
                           sys.executable, "-m", "nnunet_anatomask.gpu_report", "--tiny-runs", self.args.size,
                           "--device", self.args.device, "--schemes", *self.args.schemes], 150, 30)

    def execute(self) -> str:
        statuses = []
        sections = [self.data_section(), *self.benchmark_sections(), self.e2e_section(), self.runs_section()]
        for i, section in enumerate(sections):
            status = self.run(section)
            statuses.append(f"- {section.title}: {status}")
            if i == 0 and not status.startswith("done"):
                statuses += [f"- {s.title}: skipped (no data)" for s in sections[1:]]
                break
        return self.write(statuses)

    def write(self, statuses: list[str]) -> str:
        import torch
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        text = "\n".join([
            f"# GPU check (--size {self.args.size}, device {self.args.device})", "",
            f"- command: `bash scripts/gpu_check.sh {shlex.join(self.args.argv)}`",
            f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; machine {platform.node()}, "
            f"{os.cpu_count()} CPUs; GPU: {gpu}; torch {torch.__version__}",
            f"- limit {self.args.limit_s:.0f} s; work folder {self.work}"
            + ("" if self.args.keep_work else " (removed at the end; --keep-work keeps it)"),
            "", "## Sections", "", *statuses,
            *self.lines, ""])
        os.makedirs(os.path.dirname(os.path.abspath(self.args.output)), exist_ok=True)
        with open(self.args.output, "w") as f:
            f.write(text)
        if not self.args.keep_work:
            shutil.rmtree(self.work, ignore_errors=True)
        return self.args.output


# --- the data and the tiny runs (each run as its own process by Check) -------------------------------------
def _cli(name: str) -> str:
    exe = os.path.join(os.path.dirname(sys.executable), name)
    return exe if os.path.isfile(exe) else name


def prepare(size_name: str) -> None:
    """Generated volumes; nnU-Net's ExperimentPlanner plans and preprocesses 3d_fullres, nnUNetPlannerResEncL plans;
    ResEnc-L shares the preprocessed data when its spacing and normalisation are the same (else is preprocessed)."""
    from nnunet_anatomask.example_data import make_example_dataset
    s = SIZES[size_name]
    raw, pre = os.environ["nnUNet_raw"], os.environ["nnUNet_preprocessed"]
    make_example_dataset(raw, DATASET_ID, "GpuCheck", num_train=s.cases, num_test=0, shape=s.shape,
                         spacing=(1.0, 1.0, 1.0))
    np_ = str(s.processes)
    subprocess.run([_cli("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", np_,
                    "-npfp", np_], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([_cli("nnUNetv2_plan_experiment"), "-d", str(DATASET_ID), "-pl", "nnUNetPlannerResEncL"],
                   check=True, stdout=subprocess.DEVNULL)
    folder = os.path.join(pre, DATASET)
    with open(os.path.join(folder, "nnUNetPlans.json")) as f:
        plain = json.load(f)
    with open(os.path.join(folder, RESENC_L + ".json")) as f:
        resenc = json.load(f)
    a, b = plain["configurations"]["3d_fullres"], resenc["configurations"]["3d_fullres"]
    same = all(a[k] == b[k] for k in ("spacing", "normalization_schemes", "use_mask_for_norm")) and \
        plain["transpose_forward"] == resenc["transpose_forward"]
    if same:
        b["data_identifier"] = a["data_identifier"]
        with open(os.path.join(folder, RESENC_L + ".json"), "w") as f:
            json.dump(resenc, f, indent=2)
    else:
        subprocess.run([_cli("nnUNetv2_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres", "-plans_name",
                        RESENC_L, "-np", np_], check=True, stdout=subprocess.DEVNULL)
    for name, plans in (("PlainConvUNet", plain), ("ResEnc-L", resenc)):
        c = plans["configurations"]["3d_fullres"]
        print(f"- {name}: patch {c['patch_size']}, batch {c['batch_size']}, features "
              f"{c['architecture']['arch_kwargs']['features_per_stage']}"
              + (" (shares the PlainConvUNet plans' preprocessed data)" if name == "ResEnc-L" and same else ""))


def tiny_runs(size_name: str, device: str, schemes: Sequence[str]) -> None:
    """nnUNetv2_train DATASET 3d_fullres 0 -tr nnUNetTrainer<Scheme> for every scheme, side by side, each with a
    tiny budget in its own results folder; prints one line per scheme."""
    s = SIZES[size_name]
    env = dict(os.environ, nnUNet_anatomask_pretrain_epochs="1", nnUNet_anatomask_finetune_epochs="1",
               nnUNet_anatomask_iters_per_epoch=str(s.run_iterations), nnUNet_anatomask_save_every="1")
    if device == "cpu":
        env["nnUNet_n_proc_DA"] = "0"
    procs = {}
    for scheme in schemes:
        results = os.path.join(os.environ["nnUNet_results"], f"tiny_{scheme}")
        os.makedirs(results, exist_ok=True)
        log = open(os.path.join(results, "train.log"), "w")
        start = time.monotonic()
        procs[scheme] = (subprocess.Popen([_cli("nnUNetv2_train"), str(DATASET_ID), "3d_fullres", "0", "-tr",
                                           f"nnUNetTrainer{scheme}", "-device", device],
                                          env={**env, "nnUNet_results": results}, stdout=log,
                                          stderr=subprocess.STDOUT), log, start, results)
    failed = []
    for scheme, (proc, log, start, results) in procs.items():
        code = proc.wait()
        log.close()
        summary = os.path.join(results, DATASET, f"nnUNetTrainer{scheme}__nnUNetPlans__3d_fullres", "fold_0",
                               "validation", "summary.json")
        dice = json.load(open(summary))["foreground_mean"]["Dice"] if os.path.isfile(summary) else None
        print(f"- {scheme}: exit {code} after {time.monotonic() - start:.0f} s"
              + (f", validation Dice {dice:.3f}" if dice is not None else "") + f" (log {log.name})")
        failed += [scheme] if code != 0 else []
    if failed:
        raise SystemExit(f"tiny runs failed: {', '.join(failed)}")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    import torch
    from nnunet_anatomask.pretraining.schemes import SCHEMES
    p = argparse.ArgumentParser(prog="bash scripts/gpu_check.sh", description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="gpu")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    p.add_argument("--dtypes", nargs="+", choices=("bf16", "fp16"), default=["bf16", "fp16"],
                   help="autocast dtypes of the benchmark sections on a GPU (default both; a CPU runs without)")
    p.add_argument("--limit-s", type=float, default=450.0, help="deadline of the whole check (default 450 s)")
    p.add_argument("--output", default=None, help="results file (default gpu_check_<size>_<date>.md)")
    p.add_argument("--keep-work", action="store_true", help="keep the work folder (data, plans, tiny runs' logs)")
    p.add_argument("--prepare", metavar="SIZE", help=argparse.SUPPRESS)    # section 1, run by the check itself
    p.add_argument("--tiny-runs", metavar="SIZE", help=argparse.SUPPRESS)  # section 4
    a = p.parse_args(argv)
    a.argv = list(argv if argv is not None else sys.argv[1:])
    a.output = a.output or f"gpu_check_{a.size}_{datetime.now().strftime('%Y%m%d_%H%M')}.md"
    return a


def main(argv: Optional[Sequence[str]] = None) -> None:
    a = parse_args(argv)
    if a.prepare:
        return prepare(a.prepare)
    if a.tiny_runs:
        return tiny_runs(a.tiny_runs, a.device, a.schemes)
    path = Check(a).execute()
    print(f"gpu check: {path}")


if __name__ == "__main__":
    main()
