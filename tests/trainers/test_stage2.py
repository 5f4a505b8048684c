"""Stage 2's own pieces, in-process: atomic checkpoints and the fixed load_checkpoint that --c needs on torch >= 2.6
(nnU-Net's nnUNetTrainer_warmup.load_checkpoint calls torch.load without weights_only=False)."""
import os

import numpy as np
import pytest
import torch

from nnunet_anatomask.trainers.registry import nnUNetTrainerScratch
from tests.trainers.helpers import make_trainer


def test_checkpoint_round_trip_with_nnunets_numpy_logs(demo3d, monkeypatch, tmp_path):
    """Catches: load_checkpoint without weights_only=False (nnU-Net's logs hold numpy values: torch >= 2.6 refuses
    them), or a checkpoint written in place (a temporary file left behind, or none used)."""
    trainer = make_trainer(demo3d, nnUNetTrainerScratch, monkeypatch, tmp_path)
    trainer.initialize()
    trainer.current_epoch = 3
    trainer.logger.log("train_losses", np.float32(0.5), 0)  # as nnU-Net logs np.mean(...) of its losses
    path = os.path.join(trainer.output_folder, "checkpoint_latest.pth")
    writes = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (writes.append((src, dst)), real_replace(src, dst)))
    trainer.save_checkpoint(path)
    assert writes and writes[-1][1] == path and writes[-1][0] != path and not os.path.exists(writes[-1][0])
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # what nnU-Net's own load_checkpoint would hit
    resumed = make_trainer(demo3d, nnUNetTrainerScratch, monkeypatch, tmp_path, continue_training=True)
    resumed.load_checkpoint(path)
    assert resumed.current_epoch == 4  # nnU-Net saves the epoch to continue with (current_epoch + 1)
    for key, value in trainer.network.state_dict().items():
        assert torch.equal(resumed.network.state_dict()[key], value), key
