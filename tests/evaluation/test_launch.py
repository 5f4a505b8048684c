"""The seeded launcher's pieces that need no training (its runs are checked in test_evaluate_tiny.py)."""
import numpy as np
import pytest
import torch

from nnunet_anatomask.evaluation import launch
from nnunet_anatomask.evaluation.errors import EvaluationError
from nnunet_anatomask.trainers.stage2 import nnUNetTrainerScratch


def test_seed_everything_repeats_every_generator():
    draws = []
    for _ in range(2):
        launch.seed_everything(7)
        draws.append((np.random.uniform(), torch.rand(1).item(), __import__("random").random()))
    assert draws[0] == draws[1]


def test_initial_lr_only_for_our_stage2_trainers(monkeypatch):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    with pytest.raises(EvaluationError, match="initial_lr_default"):
        launch.set_initial_lr(nnUNetTrainer, 1e-3)
    monkeypatch.setattr(nnUNetTrainerScratch, "initial_lr_default", nnUNetTrainerScratch.initial_lr_default)
    launch.set_initial_lr(nnUNetTrainerScratch, 1e-3)
    assert nnUNetTrainerScratch.initial_lr_default == 1e-3


def test_unknown_trainer_exits_with_the_fix(capsys):
    with pytest.raises(SystemExit, match="no nnU-Net trainer named 'nnUNetTrainerNoSuch'"):
        launch.main(["train", "1", "2d", "0", "-tr", "nnUNetTrainerNoSuch", "-device", "cpu", "--seed", "0"])
