"""Learning curves: read from a real nnU-Net-style checkpoint log, and their plateau with known answers."""
import math

import pytest
import torch

from nnunet_anatomask.evaluation import curves


def test_plateau_known_answers():
    assert curves.plateau([0.1] * 10) == (pytest.approx(0.1), pytest.approx(0.0))
    rising = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    level, rise = curves.plateau(rising)  # last 2: 0.85, the 2 before: 0.65
    assert level == pytest.approx(0.85) and rise == pytest.approx(0.2)
    level, rise = curves.plateau([0.3])
    assert level == 0.3 and math.isnan(rise)


def test_curve_from_checkpoint(tmp_path):
    log = {"mean_fg_dice": [0.1, 0.5, 0.6], "ema_fg_dice": [0.1, 0.14, 0.186], "train_losses": [1.0, 0.5, 0.4],
           "val_losses": [0.9, 0.6, 0.5], "lrs": [0.01, 0.009, 0.008], "dice_per_class_or_region": [[0.1]] * 3,
           "epoch_start_timestamps": [0.0, 10.0, 20.0], "epoch_end_timestamps": [9.0, 19.5, 30.0]}
    torch.save({"logging": log, "network_weights": {}}, tmp_path / "checkpoint_final.pth")
    curves.save_curve(str(tmp_path / "checkpoint_final.pth"), str(tmp_path / "c" / "fold_0.json"), 50)
    c = curves.load_curve(str(tmp_path / "c" / "fold_0.json"))
    assert c["ema_fg_dice"] == pytest.approx([0.1, 0.14, 0.186]) and c["epoch_seconds"] == [9.0, 9.5, 10.0]
    assert list(curves.iterations(c)) == [50, 100, 150]
