"""Checkpoint faults through the real CLIs: a full disk during a stage-1 write, a truncated stage-2 checkpoint
under --c (checkpoint_io.written_atomically, checkpoint_io.load_checkpoint_file)."""
import os
import resource
import subprocess

import pytest
import torch

from nnunet_anatomask.checkpoint_io import CheckpointError
from nnunet_anatomask.trainers.registry import nnUNetTrainerScratch
from tests.conftest import BIN, run_cli
from tests.trainers.helpers import fold_folder, make_trainer

FILE_SIZE_LIMIT = 2 * 2 ** 20  # below the demo network's checkpoint, above every log and picture


def limit_file_size() -> None:
    """A full disk for every file larger than the limit (RLIMIT_FSIZE: writes past it fail with EFBIG)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def test_a_full_disk_in_a_stage1_write_leaves_no_partial_file(demo3d, tmp_path):
    results = tmp_path / "results"
    proc = subprocess.run([os.path.join(BIN, "nnUNetv2_pretrain"), str(demo3d.dataset_id), "3d_fullres", "all", "-tr",
                           "nnUNetTrainerRandomMask", "-device", "cpu"], env=demo3d.train_env(results),
                          capture_output=True, text=True, timeout=900, preexec_fn=limit_file_size)
    pre = os.path.join(fold_folder(results, demo3d.dataset_name, "nnUNetTrainerRandomMask", "3d_fullres", "all"),
                       "pretraining")
    message = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert message.startswith(f"nnUNetv2_pretrain: Writing the checkpoint {pre}/checkpoint_final.pth failed after "
                              f"2.0 MB (RuntimeError: ")
    assert "MB free when the write started. The partial file was removed. Fix: free disk space in" in message
    assert [f for f in os.listdir(pre) if ".pth" in f] == []  # no 2 MB leftover keeping the disk full


def truncated_checkpoint(path) -> None:
    torch.save({"network_weights": {"w": torch.zeros(4096)}}, path)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def test_a_truncated_stage2_checkpoint_is_named_with_the_fix(demo3d, monkeypatch, tmp_path):
    """What nnU-Net's maybe_load_checkpoint calls under --c: the trainer's load_checkpoint, on a cut file."""
    trainer = make_trainer(demo3d, nnUNetTrainerScratch, monkeypatch, tmp_path, continue_training=True)
    latest = os.path.join(trainer.output_folder, "checkpoint_latest.pth")
    truncated_checkpoint(latest)
    with pytest.raises(CheckpointError, match=rf"The stage-2 checkpoint {latest} cannot be read: it is truncated .*"
                                              rf"Fix: move this file away, then run the same command with --c"):
        trainer.load_checkpoint(latest)


@pytest.mark.slow
def test_a_truncated_stage2_checkpoint_under_nnunetv2_train_c(demo3d, tmp_path):
    results = tmp_path / "results"
    fold = fold_folder(results, demo3d.dataset_name, "nnUNetTrainerScratch", "3d_fullres", 0)
    os.makedirs(fold)
    truncated_checkpoint(os.path.join(fold, "checkpoint_latest.pth"))
    proc = run_cli(["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", "nnUNetTrainerScratch", "-device",
                    "cpu", "--c"], demo3d.train_env(results), check=False)
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"nnunet_anatomask.checkpoint_io.CheckpointError: The stage-2 checkpoint {fold}/checkpoint_latest.pth cannot "
        f"be read: it is truncated")
    assert os.path.getsize(os.path.join(fold, "checkpoint_latest.pth")) > 0  # left for the user to look at
