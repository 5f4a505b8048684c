"""Stage-1 runs shared by the tests of what makes stage 1 watchable (held-out loss, checkpoint_best, probe, progress,
nnU-Net's experiment logger; docs/watching.md): two in-process runs on the demo data, fold 0, seeded identically,
one with every addition and one with none, and one real nnUNetv2_pretrain in a terminal with W&B offline."""
import contextlib
import fcntl
import io
import os
import pty
import random
import select
import struct
import subprocess
import termios
import time

import numpy as np
import pytest
import torch
from nnunetv2.training.logging import nnunet_logger

from nnunet_anatomask.trainers.registry import nnUNetTrainerRandomMask
from tests.conftest import BIN, TINY_RUN, live
from tests.trainers.helpers import fold_folder, make_trainer

WATCH_RUN = {**TINY_RUN, "nnUNet_anatomask_pretrain_epochs": "2", "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1"}


class FakeRun:
    """What the experiment logger touches of a W&B run: its name and finish()."""

    def __init__(self):
        self.name, self.finished = None, False

    def finish(self) -> None:
        self.finished = True


class FakeBackend:
    """Stands in for nnU-Net's WandbLogger, the backend its MetaLogger builds when nnUNet_wandb_enabled=1: it keeps
    what it is given. Every instance is listed in ``made`` (stage 2's, built by nnU-Net's __init__, then stage 1's)."""

    made: list["FakeBackend"] = []

    def __init__(self, output_folder, resume):
        self.output_folder, self.resume, self.run = str(output_folder), resume, FakeRun()
        self.logged, self.summary, self.config = [], {}, {}
        FakeBackend.made.append(self)

    def update_config(self, config: dict) -> None:
        self.config.update(config)

    def log(self, key, value, step: int) -> None:
        self.logged.append((key, value, step))

    def log_summary(self, key, value) -> None:
        self.summary[key] = value


class InProcessRun:
    """A finished in-process stage-1 run: its trainer, what it printed, the fake backends it made."""

    def __init__(self, trainer, stdout: str, backends: list):
        self.trainer, self.stdout, self.backends = trainer, stdout, backends
        self.folder = trainer.stage1.folder

    def checkpoint(self, name: str) -> dict:
        return torch.load(os.path.join(self.folder, name), map_location="cpu", weights_only=True)


def seeded_stage1(planned, results, knobs: dict, fake_wandb: bool = False) -> InProcessRun:
    """RandomMask stage 1 on fold 0 of ``planned``, 2 epochs x 2 steps, global RNGs seeded as the evaluation seeds
    them; stdout captured (not a terminal)."""
    FakeBackend.made = []
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        for name, value in {**WATCH_RUN, **knobs}.items():
            mp.setenv(name, value)
        if fake_wandb:
            mp.setenv("nnUNet_wandb_enabled", "1")
            mp.setattr(nnunet_logger, "WandbLogger", FakeBackend)
        trainer = make_trainer(planned, nnUNetTrainerRandomMask, mp, results)
        torch.manual_seed(0), np.random.seed(0), random.seed(0)
        trainer.run_pretraining()
    return InProcessRun(trainer, stdout.getvalue(), list(FakeBackend.made))


@pytest.fixture(scope="session")
def watched(demo3d, tmp_path_factory) -> InProcessRun:
    """Every addition on: the held-out loss (default crops), the probe every epoch, a fake W&B backend."""
    return seeded_stage1(demo3d, tmp_path_factory.mktemp("watched"), {"nnUNet_anatomask_probe_every": "1"},
                         fake_wandb=True)


@pytest.fixture(scope="session")
def unwatched(demo3d, tmp_path_factory) -> InProcessRun:
    """Every addition off: no held-out loss, no probe, no experiment-logger backend."""
    return seeded_stage1(demo3d, tmp_path_factory.mktemp("unwatched"), {"nnUNet_anatomask_heldout_crops": "0"})


def run_in_terminal(args: list, env: dict, timeout: int = 900) -> tuple[int, str]:
    """Run a console script with stdout and stderr on a pseudo-terminal of 120 columns; its exit code and output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    start = time.monotonic()
    live(f"    $ {' '.join(map(str, args))}   (in a terminal)")
    proc = subprocess.Popen([os.path.join(BIN, args[0]), *map(str, args[1:])], env=env, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks, quiet_since = [], None
    while time.monotonic() - start < timeout:
        ready, _, _ = select.select([master], [], [], 0.5)
        chunk = b""
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every process holding the terminal has closed it
                break
            chunks.append(chunk)
        if proc.poll() is not None and not chunk:  # ended; a helper it started may still hold the terminal
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 2:
                break
    os.close(master)
    if proc.poll() is None:  # past the timeout
        proc.kill()
    code = proc.wait()
    live(f"      ... exit {code} after {time.monotonic() - start:.0f} s")
    return code, b"".join(chunks).decode("utf-8", errors="replace")


@pytest.fixture(scope="session")
def in_terminal(demo3d, tmp_path_factory):
    """nnUNetv2_pretrain on fold 0 in a terminal, with nnU-Net's W&B backend on, offline, where wandb is installed:
    (its fold folder, its terminal output)."""
    results = tmp_path_factory.mktemp("terminal")
    wandb = {"nnUNet_wandb_enabled": "1", "nnUNet_wandb_mode": "offline", "nnUNet_wandb_project": "watch",
             "WANDB_SILENT": "true"} if nnunet_logger.wandb is not None else {}
    code, output = run_in_terminal(["nnUNetv2_pretrain", demo3d.dataset_id, "3d_fullres", 0, "-tr",
                                    "nnUNetTrainerRandomMask", "-device", "cpu"], demo3d.train_env(results, **wandb))
    assert code == 0, output[-6000:]
    return fold_folder(results, demo3d.dataset_name, "nnUNetTrainerRandomMask", "3d_fullres", 0), output
