"""The environment a run needs, named at start-up in one line before a trainer is built
(nnunet_anatomask/environment.py): through nnUNetv2_pretrain (before nnU-Net's trainer lookup), through a trainer's
__init__ (before nnU-Net's __init__ makes a folder), and through nnUNetv2_train (slow)."""
import os

import pytest

from nnunet_anatomask.cli import main as pretrain_entry
from nnunet_anatomask.environment import EnvironmentProblem, check_paths_set
from nnunet_anatomask.trainers.registry import nnUNetTrainerRandomMask
from tests.conftest import clean_env, run_cli
from tests.trainers.helpers import make_trainer

NNUNET_BANNER = "Please cite the following paper when using nnU-Net"


def pretrain_message(monkeypatch, results) -> str:
    """nnUNetv2_pretrain's entry point in this process: the message it ends with."""
    if results is None:
        monkeypatch.delenv("nnUNet_results", raising=False)
    else:
        monkeypatch.setenv("nnUNet_results", str(results))
    with pytest.raises(SystemExit) as exit_info:
        pretrain_entry(["990", "3d_fullres", "all", "-tr", "nnUNetTrainerRandomMask", "-device", "cpu"])
    return str(exit_info.value.code)


def test_nnunetv2_pretrain_names_each_path_problem(monkeypatch, tmp_path):
    """Unset nnUNet_results, a results path that is a file, one where no folder can be made (/sys, on Linux):
    each one line with the fix, before nnU-Net's trainer lookup (so no dataset is needed)."""
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    message = pretrain_message(monkeypatch, None)
    assert message.startswith("nnUNetv2_pretrain: nnUNet_results is not set") and "export nnUNet_results=" in message
    (tmp_path / "a_file").write_text("not a folder")
    assert pretrain_message(monkeypatch, tmp_path / "a_file" / "results") == (
        f"nnUNetv2_pretrain: The results folder {tmp_path}/a_file/results cannot be created: {tmp_path}/a_file is a "
        f"file, not a folder. Fix: point nnUNet_results at a folder (or move that file away).")
    assert pretrain_message(monkeypatch, "/sys/nnunet_results").startswith(
        "nnUNetv2_pretrain: The results folder /sys/nnunet_results cannot be written: creating a folder in /sys "
        "failed (")


def test_nnunetv2_pretrain_without_a_gpu_names_device_cpu(tmp_path):
    """The real console script with no -device (nnU-Net's default, cuda) and no visible GPU: one line, no trainer
    built, no folder made."""
    proc = run_cli(["nnUNetv2_pretrain", "990", "3d_fullres", "all", "-tr", "nnUNetTrainerRandomMask"],
                   clean_env(nnUNet_raw=str(tmp_path), nnUNet_preprocessed=str(tmp_path),
                             nnUNet_results=str(tmp_path / "results"), CUDA_VISIBLE_DEVICES=""), timeout=300,
                   check=False)
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("nnUNetv2_pretrain: This run would train on CUDA (nnU-Net's default -device cuda), but "
                              "torch sees no CUDA GPU here") and "Fix: add -device cpu" in message
    assert NNUNET_BANNER not in proc.stdout and not (tmp_path / "results").exists()


def test_trainer_refuses_a_results_file_before_nnunet_makes_folders(demo3d, monkeypatch, tmp_path):
    (tmp_path / "results").write_text("a file")
    with pytest.raises(EnvironmentProblem, match=r"cannot be created: .*/results is a file, not a folder"):
        make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path / "results" / "inner")
    assert sorted(os.listdir(tmp_path)) == ["results"]


@pytest.mark.slow
def test_nnunetv2_train_without_a_gpu_names_device_cpu(demo3d, tmp_path):
    """The trainer's own check under nnU-Net's nnUNetv2_train: refused before nnU-Net's __init__, no folder."""
    proc = run_cli(["nnUNetv2_train", "990", "3d_fullres", 0, "-tr", "nnUNetTrainerRandomMask"],
                   demo3d.train_env(tmp_path / "results", CUDA_VISIBLE_DEVICES=""), check=False)
    assert "EnvironmentProblem: This run would train on CUDA" in proc.stderr.strip().splitlines()[-1]
    assert NNUNET_BANNER not in proc.stdout and not (tmp_path / "results").exists()


def test_unset_preprocessed_is_named(monkeypatch):
    monkeypatch.setenv("nnUNet_results", "/somewhere")
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    with pytest.raises(EnvironmentProblem, match="nnUNet_preprocessed is not set.*export nnUNet_preprocessed="):
        check_paths_set()
