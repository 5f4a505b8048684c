"""OUT/run.json: what the finished steps were trained with. A rerun in the same folder must ask for the same
(schemes may be added), or skipped steps would silently belong to another experiment."""
from __future__ import annotations

import json
import os

from nnunet_anatomask.evaluation.errors import EvaluationError


def check_same_run(out: str, settings: dict) -> None:
    """Refuse ``settings`` that differ from those recorded in ``out``; record them when none are."""
    path = os.path.join(out, "run.json")
    if os.path.isfile(path):
        with open(path) as f:
            old = json.load(f)
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            changes = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in diff.items())
            raise EvaluationError(f"{out} holds a run with other settings ({changes}). Fix: use another --output, "
                                  f"or repeat the original options.")
    with open(path, "w") as f:
        json.dump(settings, f, indent=2)
