import torch
from torch import nn

from nnunet_anatomask.pretraining.teacher import ema_update_, make_teacher


def test_ema_update_equals_formula_and_teacher_is_frozen():
    """Mutations caught: a momentum fixed at the first update (AnatoMask's follows a per-epoch schedule), a
    teacher whose state-dict keys differ from the student's (earlier stage-1 checkpoints would not resume),
    buffers averaged instead of copied."""
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    teacher = make_teacher(student)
    assert not any(p.requires_grad for p in teacher.parameters())
    assert list(teacher.state_dict()) == list(student.state_dict())
    for momentum in (0.9, 0.5):
        before = [p.clone() for p in teacher.parameters()]
        with torch.no_grad():
            for p in student.parameters():
                p.add_(torch.randn_like(p))
        student.train()(torch.randn(8, 3))  # changes running stats (buffers)
        ema_update_(teacher, student, momentum)
        for t, b, s in zip(teacher.parameters(), before, student.parameters()):
            assert torch.allclose(t, momentum * b + (1 - momentum) * s)
        for tb, sb in zip(teacher.buffers(), student.buffers()):
            assert torch.equal(tb, sb)
    assert list(teacher.state_dict()) == list(student.state_dict())
