"""torch.compile check of the masked model: graph breaks (torch._dynamo.explain) and no recompilation on a new mask."""
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_anatomask.pretraining.schemes import SCHEMES
from nnunet_anatomask.trainers.stage1 import Stage1Runner


def explain_masked_forward(trainer: nnUNetTrainer, images: torch.Tensor) -> list[str]:
    """torch._dynamo.explain of the masked model's forward (with and without features), and the graphs compiled
    over three masks."""
    runner = Stage1Runner(trainer, SCHEMES["RandomMask"])
    runner.build()
    images = images.to(runner.device)
    masks = [runner.scheme.grid_mask(runner.scheme.select_mask(images, 0).cells) for _ in range(3)]
    lines, graph_counts = [], []
    for features in (False, True):  # the plain reconstruction, and the features a scheme may ask for
        torch._dynamo.reset()
        result = torch._dynamo.explain(runner.model)(images, masks[0], features=features)
        graph_counts.append(result.graph_count)
        lines += explain_lines(result, f"torch._dynamo.explain(masked model)(images, cell_mask, features={features})")
    torch._dynamo.reset()
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    compiled = torch.compile(runner.model, backend=counting_backend)
    for mask in masks:
        compiled(images, mask)
    lines.append(f"torch.compile over 3 different masks: {len(graphs)} graph(s) compiled "
                 f"({'no recompilation' if len(graphs) == graph_counts[0] else 'RECOMPILED on a new mask'})")
    torch._dynamo.reset()
    return lines


def explain_lines(result, what: str) -> list[str]:
    """A summary line of a torch._dynamo.explain result and one line per graph break."""
    lines = [f"{what}: {result.graph_count} graph(s), {result.graph_break_count} graph break(s), "
             f"{result.op_count} ops"]
    for reason in result.break_reasons:
        frame = reason.user_stack[-1] if reason.user_stack else None
        where = f" at {frame.filename}:{frame.lineno}" if frame is not None else ""
        lines.append(f"  break: {reason.reason}{where}")
    return lines
