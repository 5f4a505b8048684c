"""The EMA teacher (AnatoMask; HPM; GL-MAE after BYOL): gradient-free copies of the student, updated every step.

theta_teacher <- m * theta_teacher + (1 - m) * theta_student  (buffers copied), m on a per-epoch schedule.
``EMATeacher`` owns the whole lifecycle a scheme needs: the copies (registered on the scheme under the names it
gives, so they are saved in ``scheme_state``), the momentum schedule, the compiled forward and the update.
"""
import copy
from typing import Optional

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from nnunet_anatomask.pretraining import schedules


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
    construction, while the schemes' momentum follows a per-epoch schedule.
    """
    ema_step = get_ema_multi_avg_fn(momentum)
    ema_step(list(teacher.parameters()), [p.detach() for p in student.parameters()], None)
    for t_buf, s_buf in zip(teacher.buffers(), student.buffers()):
        t_buf.copy_(s_buf)


class EMATeacher:
    """EMA copies of ``students`` (name -> module; the first is the masked model), registered on ``owner`` under
    those names; momentum from ``start`` to ``end`` over ``ramp_fraction`` of ``total_epochs``
    (schedules.ema_momentum). Not a module itself: ``owner``'s state_dict holds the copies, and the compiled
    forward stays out of it."""

    def __init__(self, owner: nn.Module, students: dict[str, nn.Module], total_epochs: int, start: float,
                 end: float, ramp_fraction: float) -> None:
        self.pairs = []
        for name, student in students.items():
            owner.add_module(name, make_teacher(student))
            self.pairs.append((getattr(owner, name), student))
        self.model = self.pairs[0][0]
        self.total_epochs, self.start, self.end, self.ramp_fraction = total_epochs, start, end, ramp_fraction
        self._forward: Optional[nn.Module] = None  # compiled forward and encode, where the runner compiles the student
        self._encode = None

    def momentum(self, epoch: int) -> float:
        return schedules.ema_momentum(epoch, self.total_epochs, self.start, self.end, self.ramp_fraction)

    @torch.no_grad()
    def update_(self, epoch: int) -> None:
        """After the optimiser step: every copy moves towards its student by this epoch's momentum."""
        momentum = self.momentum(epoch)
        for teacher, student in self.pairs:
            ema_update_(teacher, student, momentum)

    def compile_(self) -> None:
        """torch.compile the teacher model's forward and encoder (where the runner compiles the student)."""
        self._forward, self._encode = torch.compile(self.model), torch.compile(self.model.encode)

    def __call__(self, images: torch.Tensor, cell_mask: torch.Tensor, features: bool = False):
        """The teacher model's forward (compiled where the student is)."""
        return (self._forward or self.model)(images, cell_mask, features=features)

    def encode(self, images: torch.Tensor, cell_mask: torch.Tensor):
        """The teacher model's encoder alone (the masked-model contract's ``encode``; no decoder runs)."""
        return (self._encode or self.model.encode)(images, cell_mask)

    def figures(self, epoch: int) -> dict[str, float]:
        return {"teacher_momentum": self.momentum(epoch)}
