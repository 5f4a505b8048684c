"""Per-iteration progress of stage 1 on a terminal: tqdm's bar with the epoch's time left and the run's estimated
end (docs/watching.md).

Only where stdout is a terminal (and on rank 0): a bar redrawn in place at most twice a second, cleared when the
epoch ends, so the epoch lines stay as they were. Elsewhere (a log file, a pipe, a batch system) nothing is shown
but the epoch lines; ``training_log_*.txt`` never holds the bar, which goes to stdout only. The run's end is
estimated from the mean wall time of the epochs this process finished (held-out loss, probe and checkpoints
included), or from the current epoch's pace before the first one finished (ours).
"""
import sys
import time
from datetime import datetime, timedelta
from typing import Optional, TextIO

from tqdm import tqdm

from nnunet_anatomask.progress import format_seconds
from nnunet_anatomask.trainers.stage1_callbacks import Stage1Callback

REFRESH_SECONDS = 0.5  # tqdm's mininterval: at most two refreshes a second


def seconds_left(epoch_elapsed: float, steps_done: int, iterations: int, epochs_after: int,
                 finished_epochs: list[float]) -> float:
    """Seconds to the run's end: the epoch's remaining steps at its pace so far, then ``epochs_after`` epochs at the
    mean wall time of the finished ones (or, before any finished, at this epoch's pace)."""
    per_step = epoch_elapsed / max(steps_done, 1)
    per_epoch = sum(finished_epochs) / len(finished_epochs) if finished_epochs else per_step * iterations
    return per_step * (iterations - steps_done) + per_epoch * epochs_after


def end_text(left: float, now: Optional[datetime] = None) -> str:
    """'run ends ~Tue 14:05 (in 2h03m)'; the date too when the end is a week or more away."""
    end = (now or datetime.now()) + timedelta(seconds=left)
    when = end.strftime("%a %H:%M") if left < 6 * 86400 else end.strftime("%Y-%m-%d %H:%M")
    return f"run ends ~{when} (in {format_seconds(left)})"


class ProgressBar(Stage1Callback):
    """tqdm's per-iteration bar with ``run ends ~...`` as its postfix, on a terminal only."""

    def __init__(self, stream: Optional[TextIO] = None, clock=time.monotonic):
        self.stream, self.clock = stream or sys.stdout, clock
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar: Optional[tqdm] = None
        self.finished_epochs: list[float] = []  # wall time from one epoch's start to the next's
        self.epoch_started: Optional[float] = None

    def on_epoch_start(self, runner, epoch: int) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if self.epoch_started is not None:
            self.finished_epochs.append(now - self.epoch_started)
        self.epoch_started, self.epochs_after = now, runner.num_epochs - epoch - 1
        self.bar = tqdm(total=runner.iterations, desc=f"Stage 1 epoch {epoch}/{runner.num_epochs - 1}", unit="it",
                        file=self.stream, leave=False, mininterval=REFRESH_SECONDS, dynamic_ncols=True)

    def on_step_end(self, runner, epoch: int, batch: dict, out) -> None:
        if self.bar is None:
            return None
        left = seconds_left(self.clock() - self.epoch_started, self.bar.n + 1, self.bar.total, self.epochs_after,
                            self.finished_epochs)
        self.bar.set_postfix_str(end_text(left), refresh=False)
        self.bar.update(1)
        if self.bar.n >= self.bar.total:  # cleared before anything else prints
            self.close()
        return None

    def on_run_end(self, runner, summary: dict) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
