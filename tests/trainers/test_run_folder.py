"""One run per fold folder through the real CLIs (run_lock.py, trainers/run_folder.py), and the folders a run that
did no work leaves behind. The lock taken over after a SIGKILL is checked in test_reliability.py's kill test."""
import os
import signal
import subprocess
import time

import pytest

from nnunet_anatomask.run_lock import LOCK_NAME, read_holder
from nnunet_anatomask.trainers.run_folder import RunFolder
from tests.conftest import BIN, run_cli
from tests.trainers.helpers import fold_folder, load_weights_only

TR = "nnUNetTrainerRandomMask"
NNUNET_BANNER = "Please cite the following paper when using nnU-Net"  # printed by nnU-Net's trainer __init__


def wait_for_lock(lock: str, process: subprocess.Popen, timeout: float = 600) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        holder = read_holder(lock)
        if holder is not None:
            return holder
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    raise AssertionError(f"no lock at {lock} after {timeout} s")


def test_a_second_run_on_a_fold_folder_is_refused_and_the_first_keeps_its_result(demo3d, tmp_path):
    """Run A (nnUNetv2_pretrain, 2 epochs) takes fold_all's lock and is paused (SIGSTOP: alive, holding it). Run B
    (nnUNetv2_pretrain, 3 epochs) and run C (nnUNetv2_train --c, the issue's case of a --c beside a live run) are
    refused, naming A; neither builds a trainer nor writes in the folder. A, resumed, finishes with its own result
    (2 epochs) and releases the lock. Mutations caught: no lock (B and C run and overwrite A's result), a lock that
    does not name the holder, a lock never released."""
    results = tmp_path / "results"
    fold = fold_folder(results, demo3d.dataset_name, TR, "3d_fullres", "all")
    pretrain = ["nnUNetv2_pretrain", demo3d.dataset_id, "3d_fullres", "all", "-tr", TR, "-device", "cpu"]
    a = subprocess.Popen([os.path.join(BIN, pretrain[0]), *map(str, pretrain[1:])], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env=demo3d.train_env(results, nnUNet_anatomask_pretrain_epochs="2"))
    try:
        holder = wait_for_lock(os.path.join(fold, LOCK_NAME), a)
        os.kill(a.pid, signal.SIGSTOP)
        other_budget = demo3d.train_env(results, nnUNet_anatomask_pretrain_epochs="3")
        b = run_cli(pretrain, other_budget, check=False)
        c = run_cli(["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", "all", "-tr", TR, "-device", "cpu", "--c"],
                    other_budget, check=False)
    finally:
        os.kill(a.pid, signal.SIGCONT)
    out, err = a.communicate(timeout=900)
    assert a.returncode == 0, err[-3000:]
    assert holder["pid"] == a.pid
    for refused in (b, c):
        assert refused.returncode != 0
        assert f"Another run is using this fold folder: {fold} is locked by pid {a.pid} on host " in refused.stderr
        assert "which is still running" in refused.stderr and "Fix: wait for it to end" in refused.stderr
        assert NNUNET_BANNER not in refused.stdout  # refused before any trainer was built
    assert b.stderr.strip().splitlines()[-1].startswith("nnUNetv2_pretrain: Another run")  # the message alone
    assert "Stage 1 done" in out
    assert load_weights_only(os.path.join(fold, "pretraining", "checkpoint_final.pth"))["current_epoch"] == 2
    assert len([f for f in os.listdir(fold) if f.startswith("training_log")]) == 1  # A's only
    assert not os.path.exists(os.path.join(fold, LOCK_NAME))  # released when A ended


def test_leaving_removes_only_what_an_idle_run_created(tmp_path):
    """A run whose fold folder holds only its own log at exit removes the folders it created, bottom-up and only
    empty ones: the results folder that existed before stays, and so does a trainer folder another run created
    meanwhile beside it. A folder with any other file stays whole."""
    results = tmp_path / "results"
    results.mkdir()
    fold = results / "Dataset1_X" / "T__P__3d_fullres" / "fold_0"

    def idle_run() -> RunFolder:
        run = RunFolder(str(fold), "an idle run", holds_lock=True)
        assert run.created == str(results / "Dataset1_X") and (fold / LOCK_NAME).is_file()
        (fold / "training_log_1.txt").write_text("banner")
        run.add_own_file(str(fold / "training_log_1.txt"))
        return run

    idle_run().leave()
    assert os.listdir(results) == []
    run = idle_run()
    (results / "Dataset1_X" / "Other__P__3d_fullres").mkdir()
    run.leave()
    assert os.listdir(results / "Dataset1_X") == ["Other__P__3d_fullres"]

    worked = RunFolder(str(fold), "a run that wrote a checkpoint", holds_lock=True)
    (fold / "checkpoint_latest.pth").write_bytes(b"weights")
    worked.leave()
    assert os.listdir(fold) == ["checkpoint_latest.pth"]  # the lock released, the rest kept


@pytest.mark.slow
@pytest.mark.parametrize("trainer,extra,message", [
    # A missing -pretrained_weights file: nnU-Net's own loader reads it after initialize(), before any of our code
    # sees the path (we do not read nnU-Net's command line), so the message is nnU-Net's (docs/troubleshooting.md).
    (TR, ["-pretrained_weights", "x.pth"], "No such file or directory: 'x.pth'"),
    ("nnUNetTrainerFinetune", ["-pretrained_weights", "missing.pth"], "No such file or directory: 'missing.pth'"),
])
def test_refusals_after_the_trainer_is_built_leave_no_folder(demo3d, tmp_path, trainer, extra, message):
    """Stopped after nnU-Net's __init__ made fold_0 and its log: nothing is left at exit."""
    results = tmp_path / "results"
    proc = run_cli(["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", trainer, "-device", "cpu", *extra],
                   demo3d.train_env(results), check=False)
    assert proc.returncode != 0 and message in proc.stderr
    assert NNUNET_BANNER in proc.stdout  # the trainer was built (its folder made) before the refusal
    assert not results.exists() or os.listdir(results) == []
