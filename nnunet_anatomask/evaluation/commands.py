"""nnU-Net's console scripts as the harness calls them: this run's roots and budget in the environment, the
output in OUT/logs/<name>.log, and a failure raised with the log's last lines."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from datetime import datetime
from typing import Callable, Optional, Sequence

from nnunet_anatomask import knobs
from nnunet_anatomask.evaluation.errors import EvaluationError
from nnunet_anatomask.evaluation.layout import Layout
from nnunet_anatomask.evaluation.protocol import Size


def nnunet_environment(layout: Layout, size: Size, device: str, training: bool, results: Optional[str] = None,
                       pretrain_epochs: Optional[int] = None) -> dict:
    """The caller's environment with this run's nnU-Net roots (``results``: another results root, e.g. of a longer
    stage 1), the size's run lengths (``pretrain_epochs``: another stage-1 length) and, on the CPU, one process
    (no augmentation workers when training; that setting breaks preprocessing, so it is unset there)."""
    env = dict(os.environ)
    env.update({"nnUNet_raw": layout.raw, "nnUNet_preprocessed": layout.preprocessed,
                "nnUNet_results": results or layout.results, "PYTHONUNBUFFERED": "1",
                knobs.PRETRAIN_EPOCHS: str(pretrain_epochs or size.pretrain_epochs),
                knobs.FINETUNE_EPOCHS: str(size.finetune_epochs),
                knobs.ITERS_PER_EPOCH: str(size.iters_per_epoch), knobs.SAVE_EVERY: str(size.save_every)})
    if device == "cpu":
        env["nnUNet_def_n_proc"] = "1"
        if training:
            env["nnUNet_n_proc_DA"] = "0"
        else:
            env.pop("nnUNet_n_proc_DA", None)
    return env


def console_script(name: str) -> str:
    """The venv's own script when there is one (the harness may run without the venv on PATH)."""
    exe = os.path.join(os.path.dirname(sys.executable), name)
    return exe if os.path.isfile(exe) else name


def run_logged(log_name: str, args: Sequence, env: dict, logs_dir: str, log: Callable[[str], None]) -> float:
    """Run one command, appending its output to ``logs_dir/log_name.log``; raise EvaluationError if it fails.
    Returns the CPU seconds (user + system) the command used: unlike wall time, they barely depend on what
    else the machine runs."""
    os.makedirs(logs_dir, exist_ok=True)
    logfile = os.path.join(logs_dir, f"{log_name}.log")
    cmd = [console_script(str(args[0])), *map(str, args[1:])]
    shown = [os.path.basename(str(args[0])), *args[1:]]
    log(f"  $ {' '.join(shlex.quote(str(a)) for a in shown)}   (log: {logfile})")
    with open(logfile, "a") as f:
        f.write(f"\n===== {datetime.now().isoformat(timespec='seconds')} {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource usage (parallel steps run)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        with open(logfile) as f:
            tail = f.read()[-4000:]
        raise EvaluationError(f"{args[0]} failed (exit {code}); last lines of {logfile}:\n{tail}\n"
                              f"Fix the cause and rerun the same command: finished steps are skipped.")
    return usage.ru_utime + usage.ru_stime
