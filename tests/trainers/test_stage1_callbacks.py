"""The stage-1 runner's callbacks (trainers/stage1_callbacks.py), through a real run on the demo plans (2 epochs x
2 iterations): called in order, seeing the loader's whole batch (labels included), their figures logged and saved,
the time each overridden method took in summary.json."""
import json
import os
import time

import torch

from nnunet_anatomask.trainers.registry import nnUNetTrainerRandomMask
from nnunet_anatomask.trainers.stage1_callbacks import Stage1Callback
from tests.trainers.helpers import load_weights_only, make_trainer, stage1_log_text

SLEEP = 0.2


class Recorder(Stage1Callback):
    def __init__(self):
        self.calls = []

    def on_run_start(self, runner):
        self.calls.append(("run start",))

    def on_epoch_start(self, runner, epoch):
        self.calls.append(("start", epoch))

    def on_step_end(self, runner, epoch, batch, out):
        self.calls.append(("step", epoch))
        return {"foreground_voxels": (batch["target"] > 0).float().mean()}  # the labels reach callbacks

    def on_epoch_end(self, runner, epoch, figures):
        self.calls.append(("end", epoch))
        figures["held_out_loss"] = 1.5 + epoch  # e.g. a held-out reconstruction loss
        time.sleep(SLEEP)  # a slow callback: its time shows in summary.json

    def on_checkpoint(self, runner, path):
        self.calls.append(("checkpoint", os.path.basename(path)))

    def on_epoch_logged(self, runner, epoch, figures):
        self.calls.append(("logged", epoch))

    def on_run_end(self, runner, summary):
        self.calls.append(("run end",))


def test_callbacks_are_called_in_order_and_their_figures_logged(demo3d, monkeypatch, tmp_path):
    for knob, value in (("pretrain_epochs", "2"), ("iters_per_epoch", "2"), ("save_every", "1")):
        monkeypatch.setenv(f"nnUNet_anatomask_{knob}", value)
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.setenv("nnUNet_anatomask_heldout_crops", "0")  # no checkpoint_best: a fixed order of checkpoints
    trainer = make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path)
    recorder = Recorder()
    trainer.stage1.add_callback(recorder)
    log = load_weights_only(trainer.run_pretraining())["logging"]
    assert recorder.calls == [("run start",),
                              ("start", 0), ("step", 0), ("step", 0), ("end", 0), ("checkpoint", "checkpoint_latest.pth"),
                              ("logged", 0),
                              ("start", 1), ("step", 1), ("step", 1), ("end", 1), ("logged", 1),
                              ("checkpoint", "checkpoint_final.pth"), ("run end",)]
    assert log["held_out_loss"] == [1.5, 2.5]
    assert len(log["foreground_voxels"]) == 2 and all(0 < v < 1 for v in log["foreground_voxels"])
    assert "held_out_loss 1.5" in stage1_log_text(trainer.output_folder)
    assert torch.isfinite(torch.tensor(log["loss"])).all()
    times = json.load(open(os.path.join(trainer.stage1.folder, "summary.json")))["callback_time_s"]
    assert 2 * SLEEP <= times["Recorder.on_epoch_end"] < 2 * SLEEP + 1.0  # two epochs, each call timed
    recorded = {f"Recorder.on_{e}" for e in ("run_start", "epoch_start", "step_end", "epoch_end", "checkpoint",
                                              "epoch_logged", "run_end")}
    assert recorded | {"ProgressBar.on_step_end"} <= set(times) and "ProgressBar.on_checkpoint" not in times
