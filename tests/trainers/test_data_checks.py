"""Data that cannot teach stage 1, caught before it starts (trainers/data_checks.py): copies of the shared planned
dataset with some preprocessed cases overwritten (constant, NaN), so nothing is planned again."""
import copy
import os
import shutil

import numpy as np
import pytest
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

from nnunet_anatomask.trainers.registry import nnUNetTrainerRandomMask
from nnunet_anatomask.trainers.data_checks import UnusableDataError, case_problem, check_cases_can_teach, sampled
from tests.conftest import run_cli
from tests.trainers.helpers import make_trainer, stage1_log_text


def with_cases(planned, root, replace: dict):
    """A copy of ``planned`` whose preprocessed 3d_fullres cases named in ``replace`` hold replace[name](data)."""
    shutil.copytree(planned.preprocessed, root)
    folder = os.path.join(root, planned.dataset_name, "nnUNetPlans_3d_fullres")
    dataset = nnUNetDatasetBlosc2(folder)
    for name, change in replace.items():
        data, seg, _, properties = dataset.load_case(name)
        data, seg = change(np.asarray(data[:])).astype(np.float32), np.asarray(seg[:])
        for suffix in (".b2nd", "_seg.b2nd"):
            os.remove(os.path.join(folder, name + suffix))
        nnUNetDatasetBlosc2.save_case(data, seg, properties, os.path.join(folder, name), chunks=data.shape,
                                      blocks=data.shape)
    changed = copy.copy(planned)
    changed.preprocessed = str(root)
    return changed


def constant(data: np.ndarray) -> np.ndarray:
    return np.zeros_like(data)


def test_sampled_cases_spread_evenly():
    names = [f"case_{i:02d}" for i in range(20)]
    assert sampled(names, 5) == ["case_00", "case_05", "case_10", "case_14", "case_19"]
    assert sampled(names[:3], 5) == names[:3]


def test_case_problem_on_small_arrays():
    two_channels = np.stack([np.full((4, 4, 4), 1.0), np.full((4, 4, 4), -2.5)])
    assert case_problem(two_channels) == ("constant", "all 1 / -2.5")
    two_channels[1, 0, 0, 0] = 0.0  # one channel varies: the case can teach
    assert case_problem(two_channels) is None
    two_channels[0, 1, 1, 1], two_channels[0, 2, 2, 2] = np.nan, np.inf
    assert case_problem(two_channels) == ("non-finite", "1 NaN, 1 Inf voxels")


def test_every_case_constant_is_refused_before_stage1_and_leaves_nothing(demo3d, tmp_path):
    """The issue's case (every voxel 1000, all 0 after normalisation) through nnUNetv2_pretrain: refused with the
    cases and the fix, after the trainer was built and before stage 1; the fold folder it made is gone at exit."""
    cases = [f"case_{i:03d}" for i in range(5)]
    blank = with_cases(demo3d, tmp_path / "preprocessed", {name: constant for name in cases})
    results = tmp_path / "results"
    proc = run_cli(["nnUNetv2_pretrain", blank.dataset_id, "3d_fullres", "all", "-tr", "nnUNetTrainerRandomMask",
                    "-device", "cpu"], blank.train_env(results), check=False)
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("nnUNetv2_pretrain: Every preprocessed case checked (5 of 5) is constant: case_000 "
                              "(all 0), case_001 (all 0)")
    assert "nothing to reconstruct" in message and f"Fix: check the images in nnUNet_raw/{demo3d.dataset_name}/" \
                                                  f"imagesTr" in message
    assert "Please cite the following paper" in proc.stdout  # refused after nnU-Net's __init__ made fold_all...
    assert not results.exists()  # ...which the run removed at exit


def test_some_constant_cases_are_named_and_stage1_goes_on(demo3d, monkeypatch, tmp_path):
    for name, value in {"nnUNet_anatomask_pretrain_epochs": "1", "nnUNet_anatomask_iters_per_epoch": "1",
                        "nnUNet_n_proc_DA": "0"}.items():
        monkeypatch.setenv(name, value)
    partly = with_cases(demo3d, tmp_path / "preprocessed", {"case_001": constant, "case_003": constant})
    trainer = make_trainer(partly, nnUNetTrainerRandomMask, monkeypatch, tmp_path / "results", fold="all")
    trainer.run_pretraining()
    log = stage1_log_text(trainer.output_folder) + open(trainer.log_file).read()
    assert ("WARNING: 2 of the 5 preprocessed cases checked are constant, and stage 1 learns nothing from them: "
            "case_001 (all 0), case_003 (all 0).") in log
    assert "Stage 1 done" in log


def test_a_nan_case_is_refused_naming_it(demo3d, tmp_path):
    def one_nan(data):
        data = data.copy()
        data[0, 3, 4, 5] = np.nan
        return data

    nan = with_cases(demo3d, tmp_path / "preprocessed", {"case_002": one_nan})
    folder = os.path.join(nan.preprocessed, demo3d.dataset_name, "nnUNetPlans_3d_fullres")
    with pytest.raises(UnusableDataError, match=r"1 of the 5 preprocessed cases checked hold NaN or Inf voxels, "
                                                r"which stop stage 1 with a non-finite loss: case_002 \(1 NaN, 0 Inf"):
        check_cases_can_teach(folder, demo3d.dataset_name, warn=print)
