"""Progress lines: step k of n, elapsed time, and an estimate of the rest at the mean pace."""
import io

from nnunet_anatomask.progress import Progress, format_seconds


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_plain_lines_with_elapsed_and_estimate():
    clock, out = Clock(), io.StringIO()
    with Progress(4, "evaluation", stream=out, clock=clock) as p:
        p.start("plan")
        clock.now += 30
        p.done()
        p.start("stage 1 AnatoMask")
        clock.now += 90
        p.done()
        p.start("stage 2")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[evaluation 1/4] plan - elapsed 0s, estimate after the first step"
    assert lines[1] == "[evaluation 2/4] stage 1 AnatoMask - elapsed 30s, about 1m30s left"  # 30 s/step x 3
    assert lines[2] == "[evaluation 3/4] stage 2 - elapsed 2m00s, about 2m00s left"  # 60 s/step x 2


def test_format_seconds():
    assert [format_seconds(s) for s in (4.2, 65, 3725)] == ["4s", "1m05s", "1h02m05s"]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_tqdm_bar():
    """On a terminal the steps drive a tqdm bar (count, current step) instead of one line each."""
    out = Terminal()
    with Progress(2, "evaluation", stream=out) as p:
        p.start("plan")
        p.done()
        p.start("stage 2")
        p.done()
        assert p.bar.n == 2 and p.bar.total == 2
    text = out.getvalue()
    assert "evaluation" in text and "2/2" in text and "stage 2" in text and "\r" in text
    assert "[evaluation 1/2] plan - elapsed" not in text


def test_a_skipped_step_leaves_the_bar_total():
    """A resumed run skips its finished steps: the bar counts only the steps this run does (2 of 3 here)."""
    out = Terminal()
    with Progress(3, "evaluation", stream=out) as p:
        p.skip()
        p.start("stage 2")
        p.done()
        assert p.bar.n == 1 and p.bar.total == 2
    assert "1/2" in out.getvalue()


def test_steps_weighted_by_their_expected_work():
    """A long stage 1 then short steps: the time left is the elapsed time per unit of finished work times the work
    left (here 1 s of wall per expected second), not the mean step time times the steps left; a skipped step's work
    leaves the total."""
    clock, out = Clock(), io.StringIO()
    with Progress(4, "evaluation", stream=out, clock=clock, work=1000 + 100 + 50 + 20) as p:
        p.skip(20)
        p.start("stage 1")
        clock.now += 1000
        p.done(1000)
        p.start("stage 2")
        clock.now += 100
        p.done(100)
        p.start("predict")
    lines = out.getvalue().splitlines()
    assert lines[1] == "[evaluation 2/3] stage 2 - elapsed 16m40s, about 2m30s left"  # 100 + 50 s of work left
    assert lines[2] == "[evaluation 3/3] predict - elapsed 18m20s, about 50s left"
