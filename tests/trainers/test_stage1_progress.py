"""Per-iteration progress of stage 1 (trainers/stage1_progress.py, docs/watching.md): on a terminal only, never in the
log file."""
import io
import os
import time
from datetime import datetime
from types import SimpleNamespace

import pytest

from nnunet_anatomask.trainers.stage1_progress import REFRESH_SECONDS, ProgressBar, end_text, seconds_left
from tests.trainers.helpers import stage1_log_text


def test_time_left_known_answers():
    """Epoch: 10 of 100 steps in 20 s -> 180 s left; then 3 epochs at the finished ones' mean (300 s) -> 1080 s; before
    any epoch finished, at this epoch's pace (200 s per epoch) -> 780 s."""
    assert seconds_left(20.0, 10, 100, 3, [280.0, 320.0]) == pytest.approx(180 + 900)
    assert seconds_left(20.0, 10, 100, 3, []) == pytest.approx(180 + 600)
    now = datetime(2026, 12, 5, 14, 0)
    assert end_text(3725, now) == "run ends ~Sat 15:02 (in 1h02m05s)"
    assert end_text(8 * 86400, now) == "run ends ~2026-12-13 14:00 (in 192h00m00s)"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def epochs_of(bar: ProgressBar, steps: int, pause_after: int = 0) -> None:
    runner = SimpleNamespace(iterations=steps, num_epochs=3)
    bar.on_epoch_start(runner, 0)
    for step in range(steps):
        bar.on_step_end(runner, 0, {}, None)
        if step == pause_after:
            time.sleep(REFRESH_SECONDS + 0.1)  # one refresh is due after this pause


def test_bar_on_a_terminal_redrawn_at_most_twice_a_second():
    """500 fast steps on a terminal: the bar shows the epoch, its steps and the run's end, redrawn a handful of times
    (tqdm's mininterval), and cleared at the epoch's end; on anything that is not a terminal, nothing at all.
    Catches: a bar that redraws every step, one drawn into files and pipes, one left standing."""
    terminal = Terminal()
    start = time.monotonic()
    epochs_of(ProgressBar(terminal), 500)
    elapsed = time.monotonic() - start
    shown = terminal.getvalue()
    assert "Stage 1 epoch 0/2" in shown and "run ends ~" in shown and "500/500" not in shown.split("\r")[-1]
    assert shown.count("\r") <= 3 + elapsed / REFRESH_SECONDS, shown.count("\r")
    pipe = io.StringIO()
    epochs_of(ProgressBar(pipe), 50)
    assert pipe.getvalue() == ""


def test_terminal_gets_the_bar_and_the_log_file_does_not(in_terminal):
    """The real nnUNetv2_pretrain in a terminal: the bar (carriage returns, the epoch, tqdm's rate) is on the terminal,
    the training log holds the same epoch lines and no trace of the bar."""
    fold, output = in_terminal
    assert "\r" in output and "Stage 1 epoch 0/0" in output and "it/s" in output
    log = stage1_log_text(fold)
    assert "Epoch 0 (stage 1: RandomMask pretraining" in log and "Epoch 0 (stage 1: RandomMask" in output
    assert "\r" not in log and "Stage 1 epoch" not in log and "it/s" not in log


def test_nothing_but_the_epoch_lines_when_stdout_is_not_a_terminal(watched):
    assert "Epoch 1 (stage 1: RandomMask pretraining" in watched.stdout
    assert "\r" not in watched.stdout and "Stage 1 epoch" not in watched.stdout and "it/s" not in watched.stdout
    assert os.path.isfile(os.path.join(watched.folder, "progress.png"))
