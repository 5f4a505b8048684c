import torch
from torch import nn

from nnunet_anatomask.pretraining.teacher import ema_update_, make_teacher


def test_ema_update_equals_formula_and_teacher_is_frozen():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    teacher = make_teacher(student)
    assert not any(p.requires_grad for p in teacher.parameters())
    before = [p.clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    student.train()(torch.randn(8, 3))  # changes running stats (buffers)
    ema_update_(teacher, student, 0.9)
    for t, b, s in zip(teacher.parameters(), before, student.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * s)
    for tb, sb in zip(teacher.buffers(), student.buffers()):
        assert torch.equal(tb, sb)
