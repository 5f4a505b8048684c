"""The seeded launcher's pieces that need no training (its runs are checked in test_evaluate_tiny.py)."""
import os

import numpy as np
import pytest
import torch

from nnunet_anatomask import knobs
from nnunet_anatomask.evaluation import launch
from nnunet_anatomask.evaluation.errors import EvaluationError
from nnunet_anatomask.trainers.stage2 import nnUNetTrainerScratch


def test_seed_everything_repeats_every_generator():
    draws = []
    for _ in range(2):
        launch.seed_everything(7)
        draws.append((np.random.uniform(), torch.rand(1).item(), __import__("random").random()))
    assert draws[0] == draws[1]


def test_initial_lr_sets_the_user_knob_for_our_stage2_trainers_only(monkeypatch):
    """--initial-lr goes through the documented knob (no class attribute is changed); the trainers' reading of
    the knob is pinned in tests/trainers/test_stage2_optimisers.py."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    monkeypatch.delenv(knobs.FINETUNE_LR, raising=False)
    with pytest.raises(EvaluationError, match=knobs.FINETUNE_LR):
        launch.set_start_lr(nnUNetTrainer, 1e-3)
    assert knobs.FINETUNE_LR not in os.environ
    launch.set_start_lr(nnUNetTrainerScratch, 1e-3)
    assert knobs.read_lr(knobs.FINETUNE_LR) == 1e-3
    assert not hasattr(nnUNetTrainerScratch, "initial_lr_default")


def test_unknown_trainer_exits_with_the_fix(capsys):
    with pytest.raises(SystemExit, match="no nnU-Net trainer named 'nnUNetTrainerNoSuch'"):
        launch.main(["train", "1", "2d", "0", "-tr", "nnUNetTrainerNoSuch", "-device", "cpu", "--seed", "0"])
