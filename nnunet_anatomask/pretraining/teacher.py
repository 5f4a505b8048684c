"""EMA teacher (AnatoMask; HPM): a gradient-free copy of the student, updated every step.

theta_teacher <- m * theta_teacher + (1 - m) * theta_student  (buffers copied).
"""
import copy

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen deep copy of the student in eval mode."""
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    return teacher.eval()


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """In place: teacher = momentum * teacher + (1 - momentum) * student, for every parameter; buffers copied.

    The update is torch's own EMA step (get_ema_multi_avg_fn: one fused torch._foreach_lerp_), on the teacher's
    parameter list. torch's AveragedModel is not used (ours): it would wrap the teacher, renaming the checkpoint's
    `teacher.network.*` keys to `teacher.module.network.*` plus an `n_averaged` buffer (earlier stage-1 checkpoints
    would no longer resume), copy the student on its first update instead of averaging, and fix the momentum at
    construction, while AnatoMask's momentum follows a per-epoch schedule.
    """
    ema_step = get_ema_multi_avg_fn(momentum)
    ema_step(list(teacher.parameters()), [p.detach() for p in student.parameters()], None)
    for t_buf, s_buf in zip(teacher.buffers(), student.buffers()):
        t_buf.copy_(s_buf)
