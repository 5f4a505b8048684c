"""Progress of long runs (evaluation harness, benchmark): which step of how many, elapsed time, time left.

A tqdm bar redrawn in place where the output is a terminal; one plain line per step otherwise (logs, CI, pipes),
with the time left at the pace of the finished steps. Steps of very different lengths (a stage 1 of hours, a
prediction of seconds) each carry their expected work (seconds from the run's own estimate): the time left is then
the elapsed time per unit of finished work times the work still to do, not the mean step time times the steps left.
"""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

from tqdm import tqdm


def format_seconds(seconds: float) -> str:
    """3725 -> '1h02m05s', 65 -> '1m05s', 4.2 -> '4s'."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """``with Progress(12, "evaluation") as p: p.start("stage 1 AnatoMask") ... p.done()`` per step.

    ``work``: the expected work of all ``total`` steps together (any unit); each step then says its own share in
    ``done(work)`` or ``skip(work)``. Without it every step weighs 1."""

    def __init__(self, total: int, label: str, stream: Optional[TextIO] = None, clock=time.monotonic,
                 work: Optional[float] = None):
        self.total, self.label, self.stream, self.clock = total, label, stream or sys.stdout, clock
        self.finished, self.started_at, self.current = 0, clock(), ""
        self.work, self.work_done = float(total) if work is None else float(work), 0.0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = tqdm(total=total, desc=label, file=self.stream, unit="step", dynamic_ncols=True) \
            if self.tty else None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def estimate_left(self) -> Optional[float]:
        """Seconds left: elapsed seconds per unit of finished work x the work left (None before a step finished)."""
        if self.work_done <= 0:
            return None
        return (self.clock() - self.started_at) / self.work_done * max(self.work - self.work_done, 0.0)

    def line(self) -> str:
        elapsed = format_seconds(self.clock() - self.started_at)
        left = self.estimate_left()
        rest = "estimate after the first step" if left is None else f"about {format_seconds(left)} left"
        step = min(self.finished + 1, self.total)
        return f"[{self.label} {step}/{self.total}] {self.current} - elapsed {elapsed}, {rest}"

    def start(self, what: str) -> None:
        """A step begins: say which."""
        self.current = what
        if self.bar is not None:
            self.bar.set_postfix_str(what)
        else:
            self._write(self.line())

    def skip(self, work: float = 1.0) -> None:
        """A step that is already done: this run neither counts nor waits for it."""
        self.total -= 1
        self.work -= work
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def done(self, work: float = 1.0) -> None:
        self.finished += 1
        self.work_done += work
        if self.bar is not None:
            self.bar.update(1)
        elif self.finished == self.total:
            self.current = "done"
            self._write(f"[{self.label} {self.total}/{self.total}] done in "
                        f"{format_seconds(self.clock() - self.started_at)}")

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
