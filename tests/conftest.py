"""Shared fixtures: tiny generated datasets planned once per session by the real nnUNetv2_plan_and_preprocess,
and a helper that runs the real console scripts in a clean environment (docs/installation.md, test budget)."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from nnunet_anatomask.example_data import make_example_dataset

BIN = os.path.dirname(sys.executable)
TINY_RUN = {  # 1 epoch x 2 iterations per stage
    "nnUNet_anatomask_pretrain_epochs": "1", "nnUNet_anatomask_finetune_epochs": "1",
    "nnUNet_anatomask_iters_per_epoch": "2", "nnUNet_anatomask_save_every": "1",
}


def clean_env(**extra: str) -> dict:
    """The caller's environment without our registration or PYTHONPATH, single-process nnU-Net."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("nnUNet_extTrainer", "PYTHONPATH") and not k.startswith("nnUNet_anatomask_")}
    env.update({"nnUNet_def_n_proc": "1", "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


_PLUGINS = {}  # pytest's terminal reporter and capture manager, to show lines while a test runs


@pytest.fixture
def one_thread():
    """One torch thread for the test (one summation order, as when a reference was recorded)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _live_lines(request):
    manager = request.config.pluginmanager
    _PLUGINS.update(reporter=manager.get_plugin("terminalreporter"), capture=manager.get_plugin("capturemanager"))
    yield
    _PLUGINS.clear()


def live(line: str) -> None:
    """Show a line at once (e.g. each real-CLI call of a long test), with pytest's capturing suspended for it."""
    reporter, capture = _PLUGINS.get("reporter"), _PLUGINS.get("capture")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


def run_cli(args: list, env: dict, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Run one of the real console scripts (nnUNetv2_train, ...) and fail with its output if it fails."""
    start = time.monotonic()
    live(f"    $ {' '.join(map(str, args))}")
    proc = subprocess.run([os.path.join(BIN, args[0]), *map(str, args[1:])], env=env, capture_output=True,
                          text=True, timeout=timeout)
    live(f"      ... exit {proc.returncode} after {time.monotonic() - start:.0f} s")
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}"
                    f"\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


class Planned:
    """A generated raw dataset, planned and preprocessed; `train_env()` gives a fresh results folder."""

    def __init__(self, root, dataset_id: int, name: str):
        self.root, self.dataset_id, self.name = root, dataset_id, name
        self.raw, self.preprocessed = str(root / "raw"), str(root / "preprocessed")
        self.dataset_name = f"Dataset{dataset_id:03d}_{name}"

    def env(self, results: str, **extra) -> dict:
        return clean_env(nnUNet_raw=self.raw, nnUNet_preprocessed=self.preprocessed, nnUNet_results=results,
                         **extra)

    def train_env(self, results, **extra) -> dict:
        """Training environment: tiny run lengths, no data-augmentation worker processes."""
        return self.env(str(results), nnUNet_n_proc_DA="0", **{**TINY_RUN, **extra})

    def plans(self, plans_name: str = "nnUNetPlans") -> dict:
        with open(os.path.join(self.preprocessed, self.dataset_name, plans_name + ".json")) as f:
            return json.load(f)

    def dataset_json(self) -> dict:
        with open(os.path.join(self.preprocessed, self.dataset_name, "dataset.json")) as f:
            return json.load(f)

    def images_ts(self) -> str:
        return os.path.join(self.raw, self.dataset_name, "imagesTs")


def plan(tmp_path_factory, dataset_id: int, name: str, configs: list, planner: str = None, **data_kwargs) -> Planned:
    planned = Planned(tmp_path_factory.mktemp(name), dataset_id, name)
    # 5 training cases: nnU-Net's 5-fold split leaves 1 validation case per fold (validation is the slow part)
    make_example_dataset(planned.raw, dataset_id=dataset_id, name=name, **{"num_train": 5, **data_kwargs})
    args = ["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", *configs, "-np", 1]
    if planner:
        args += ["-pl", planner]
    run_cli(args, planned.env(str(planned.root / "results")))
    return planned


@pytest.fixture(scope="session")
def demo3d(tmp_path_factory) -> Planned:
    """32³ isotropic, one channel, 5 training cases: 3d_fullres and 2d plans."""
    return plan(tmp_path_factory, 990, "Demo", ["3d_fullres", "2d"])


@pytest.fixture(scope="session")
def aniso2ch(tmp_path_factory) -> Planned:
    """Two channels, strongly anisotropic spacing (3 mm out of plane): 3d_fullres plans."""
    return plan(tmp_path_factory, 991, "Aniso", ["3d_fullres"], num_channels=2, shape=(16, 32, 32),
                spacing=(3.0, 1.0, 1.0))


@pytest.fixture(scope="session")
def resenc(tmp_path_factory) -> Planned:
    """The 32³ demo data planned with nnU-Net's ResEnc M planner."""
    return plan(tmp_path_factory, 992, "ResEnc", ["3d_fullres"], planner="nnUNetPlannerResEncM")
