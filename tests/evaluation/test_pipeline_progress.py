"""The harness's time left weighs each step by its expected seconds (``estimate.py``): a stage 1 at factor 10
counts ten times the iterations of factor 1, and a step already done leaves the total work."""
import io
import os

import pytest

from nnunet_anatomask.evaluation.estimate import estimate
from nnunet_anatomask.evaluation.layout import arm_name
from nnunet_anatomask.evaluation.pipeline import Run
from nnunet_anatomask.evaluation.protocol import SIZES
from nnunet_anatomask.progress import Progress

TRAINER = "nnUNetTrainerAnatoMask"


def test_stage1_work_of_an_arm_is_the_estimates():
    size = SIZES["cpu-pool"]
    run = Run(size, "unused", [TRAINER], list(size.fractions), list(size.seeds), "cpu", stage1_factors=[1, 10])
    e = estimate(size, [TRAINER], 1, factors=[1, 10])
    x1, x10 = run.stage1_seconds(arm_name(TRAINER, 1)), run.stage1_seconds(arm_name(TRAINER, 10))
    assert (x1, x10) == (e.stage1_s["AnatoMask"], e.stage1_s["AnatoMask_x10"])
    overhead = size.cost.stage2_overhead_s
    assert x10 - overhead == pytest.approx(10 * (x1 - overhead))


def test_a_stopped_stage1_counts_only_its_epochs_left(tmp_path):
    """A stage 1 stopped at epoch 100 of 400 (x10 of 40) resumes there: three quarters of its work is left."""
    import torch
    size = SIZES["cpu-pool"]
    run = Run(size, str(tmp_path), [TRAINER], list(size.fractions), list(size.seeds), "cpu", stage1_factors=[1, 10])
    arm = arm_name(TRAINER, 10)
    os.makedirs(run.layout.stage1_dir(arm))
    torch.save({"current_epoch": 100}, run.layout.stage1_latest(arm))
    e = estimate(size, [TRAINER], 1, factors=[1, 10])
    assert run.stage1_seconds(arm) == pytest.approx(0.75 * e.stage1_s["AnatoMask_x10"])
    assert run.stage1_seconds(arm_name(TRAINER, 1)) == e.stage1_s["AnatoMask"]  # not started


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_step_reports_its_work_to_the_progress(tmp_path):
    clock, out, lines = Clock(), io.StringIO(), []
    size = SIZES["tiny"]
    run = Run(size, str(tmp_path), [TRAINER], list(size.fractions), list(size.seeds), "cpu", log=lines.append)
    run.progress = Progress(3, "evaluation", stream=out, clock=clock, work=600 + 300 + 100)

    def work(seconds):
        clock.now += seconds

    run.step("stage1 done before", True, None, work=600)
    run.step("stage2", False, work, 150, work=300)  # twice as slow as expected
    run.step("predict", False, work, 0, work=100)
    assert lines[0] == "[skip] stage1 done before (done)" and run.progress.total == 2
    assert "[evaluation 2/2] predict - elapsed 2m30s, about 50s left" in out.getvalue()
