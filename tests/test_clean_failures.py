"""Bad input ends cleanly: our CLI prints the message alone, nnU-Net's CLI path raises it as the last line, and
no empty folder is left under nnUNet_results (in-process, through the same code the CLIs run)."""
import os

import pytest

from nnunet_anatomask.cli import main as pretrain_entry
from nnunet_anatomask.knobs import KnobError
from nnunet_anatomask.pretraining.grid import MaskGridError
from nnunet_anatomask.trainers.registry import nnUNetTrainerRandomMask
from tests.trainers.helpers import make_trainer


def results_entries(results) -> list[str]:
    return [os.path.relpath(os.path.join(root, name), results) for root, dirs, files in os.walk(results)
            for name in dirs + files]


def test_bad_knob_in_our_cli_is_the_message_alone_and_makes_no_folder(demo3d, monkeypatch, tmp_path):
    """Catches: reading the knob after nnU-Net's __init__ made fold_all/, or a traceback from our CLI."""
    monkeypatch.setenv("nnUNet_preprocessed", demo3d.preprocessed)
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    monkeypatch.setenv("nnUNet_anatomask_pretrain_epochs", "-3")
    with pytest.raises(SystemExit) as exit_info:
        pretrain_entry(["990", "3d_fullres", "all", "-tr", "nnUNetTrainerRandomMask", "-device", "cpu"])
    message = str(exit_info.value.code)
    assert message.startswith("nnUNetv2_pretrain: nnUNet_anatomask_pretrain_epochs='-3' is not a positive integer")
    assert "export nnUNet_anatomask_pretrain_epochs=" in message
    assert results_entries(tmp_path) == []


def test_bad_knob_under_nnunets_cli_leaves_no_folder(demo3d, monkeypatch, tmp_path):
    monkeypatch.setenv("nnUNet_anatomask_iters_per_epoch", "zero")
    with pytest.raises(KnobError, match="nnUNet_anatomask_iters_per_epoch='zero'"):
        make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path)
    assert results_entries(tmp_path) == []


def test_refusal_after_nnunets_init_removes_the_folders_it_made(demo3d, monkeypatch, tmp_path):
    """A mask-grid refusal comes after nnU-Net's __init__ made DatasetXXX/<trainer>/fold_0: all three go again;
    a folder that existed before stays."""
    plans = demo3d.plans()
    plans["configurations"]["3d_fullres"]["patch_size"] = [8, 32, 32]
    with pytest.raises(MaskGridError, match="at least 2 cells"):
        make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path, plans=plans)
    assert results_entries(tmp_path) == []
    (tmp_path / demo3d.dataset_name).mkdir()
    with pytest.raises(MaskGridError):
        make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path, plans=plans)
    assert results_entries(tmp_path) == [demo3d.dataset_name]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pretrain_entry(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("nnunet-anatomask 0.2.0 (nnunetv2 2.8.")
