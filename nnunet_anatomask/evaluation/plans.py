"""A plans file with capped network widths and batch size, sharing the planned file's preprocessed data (ours:
nnU-Net plans for a GPU; a CPU run needs a smaller network and batch)."""
from __future__ import annotations

import json
from typing import Optional


def capped_plans_name(max_features: Optional[int], max_batch_size: Optional[int]) -> str:
    """'nnUNetPlans' when nothing is capped, else e.g. 'nnUNetPlansCappedF64B16'."""
    if max_features is None and max_batch_size is None:
        return "nnUNetPlans"
    return ("nnUNetPlansCapped" + (f"F{max_features}" if max_features else "")
            + (f"B{max_batch_size}" if max_batch_size else ""))


def write_capped_plans(source: str, target: str, configuration: str, plans_name: str,
                       max_features: Optional[int], max_batch_size: Optional[int]) -> dict:
    """A copy of ``source`` with ``configuration``'s features_per_stage capped at ``max_features`` and its batch
    size at ``max_batch_size``, renamed ``plans_name``; data_identifier unchanged (the same preprocessed data)."""
    with open(source) as f:
        plans = json.load(f)
    plans["plans_name"] = plans_name
    cfg = plans["configurations"][configuration]
    if max_features:
        kw = cfg["architecture"]["arch_kwargs"]
        kw["features_per_stage"] = [min(int(x), max_features) for x in kw["features_per_stage"]]
    if max_batch_size:
        cfg["batch_size"] = min(int(cfg["batch_size"]), max_batch_size)
    with open(target, "w") as f:
        json.dump(plans, f, indent=4)
    return plans
