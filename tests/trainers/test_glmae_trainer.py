"""nnUNetTrainerGLMAE on the planned demo data: stage 1 in-process on 2d plans (default suite), and the real
nnUNetv2_train CLI on 3d_fullres and 2d plans, stage 1 -> stage 2 -> nnUNetv2_predict (slow marker)."""
import os

import numpy as np
import pytest

from nnunet_anatomask.trainers.registry import nnUNetTrainerGLMAE
from tests.conftest import TINY_RUN
from tests.trainers.helpers import load_weights_only, make_trainer, stage1_log_text
from tests.trainers.cli_runs import train_and_predict

LOGGED = ("rec_global", "rec_local", "g2g", "g2l", "g2g_vs_previous", "teacher_momentum")


def check_glmae_log(ckpt: dict) -> None:
    """Every GL-MAE figure logged once per epoch, finite; the teacher and heads in scheme_state only."""
    for key in LOGGED:
        assert len(ckpt["logging"][key]) == 1 and np.isfinite(ckpt["logging"][key][0]), key
    scheme_state = ckpt["scheme_state"]["scheme"]
    assert {k.split(".")[0] for k in scheme_state} == {"projector", "predictor", "teacher", "teacher_projector"}
    assert not any(k.startswith(("projector", "predictor", "teacher")) for k in ckpt["network_weights"])


def test_stage1_in_process_2d(demo3d, monkeypatch, tmp_path):
    """One epoch x 2 steps of stage 1 on 2d plans through the trainer: loader crops of 5/3 x the patch, the log
    and the picture with the local crop box."""
    for name, value in {**TINY_RUN, "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1"}.items():
        monkeypatch.setenv(name, value)
    trainer = make_trainer(demo3d, nnUNetTrainerGLMAE, monkeypatch, tmp_path, config="2d")
    ckpt = load_weights_only(trainer.run_pretraining())
    check_glmae_log(ckpt)
    log = stage1_log_text(trainer.output_folder)
    assert "loader crops 1.67 x the patch" in log and "g2l" in log
    assert os.path.isfile(os.path.join(trainer.output_folder, "pretraining", "reconstruction_epoch_0000.png"))


@pytest.mark.slow
@pytest.mark.parametrize("config", ["3d_fullres", "2d"])
def test_cli_end_to_end(demo3d, tmp_path, config):
    fold_dir = train_and_predict(demo3d, tmp_path, "nnUNetTrainerGLMAE", config, "GLMAE")
    check_glmae_log(load_weights_only(os.path.join(fold_dir, "pretraining", "checkpoint_final.pth")))
