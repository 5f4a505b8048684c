"""Test metrics by nnU-Net's own code: ``compute_metrics`` per case (the function behind
``nnUNetv2_evaluate_folder``), its ``summary.json`` layout, and the per-case Dice matrix the report reads."""
from __future__ import annotations

import json
import os
import warnings

import numpy as np

from nnunet_anatomask.evaluation.errors import EvaluationError

ENDING = ".nii.gz"


def evaluate_folder(ref_folder: str, pred_folder: str, labels: dict) -> dict:
    """nnU-Net's compute_metrics on every predicted case (in process, no worker pool), saved as summary.json in
    the layout of compute_metrics_on_folder (metric_per_case, mean, foreground_mean)."""
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics, save_summary_json
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.utilities.json_export import recursive_fix_for_json_export
    refs = sorted(f for f in os.listdir(ref_folder) if f.endswith(ENDING))
    missing = [f for f in refs if not os.path.isfile(os.path.join(pred_folder, f))]
    if missing:
        raise EvaluationError(f"{pred_folder} lacks predictions for {missing}. Fix: delete that folder and rerun "
                              f"(the prediction step then runs again).")
    rw, regions = SimpleITKIO(), sorted(labels)
    results = [compute_metrics(os.path.join(ref_folder, f), os.path.join(pred_folder, f), rw, regions)
               for f in refs]
    metrics = list(results[0]["metrics"][regions[0]])
    with warnings.catch_warnings():  # a class absent from every case: NaN, as in nnU-Net
        warnings.simplefilter("ignore", RuntimeWarning)
        means = {r: {m: float(np.nanmean([c["metrics"][r][m] for c in results])) for m in metrics}
                 for r in regions}
    fg = {m: float(np.mean([means[r][m] for r in regions])) for m in metrics}
    for c in results:
        recursive_fix_for_json_export(c)
    recursive_fix_for_json_export(means)
    summary = {"metric_per_case": results, "mean": means, "foreground_mean": fg}
    save_summary_json(summary, os.path.join(pred_folder, "summary.json"))
    return summary


def case_dice(summary_file: str) -> tuple[list[str], np.ndarray, list[int]]:
    """(case ids, Dice [cases, classes] with NaN where a class is absent in both, class ids) from summary.json."""
    with open(summary_file) as f:
        s = json.load(f)
    classes = sorted(int(k) for k in s["metric_per_case"][0]["metrics"])
    cases, rows = [], []
    for c in s["metric_per_case"]:
        cases.append(os.path.basename(c["reference_file"])[: -len(ENDING)])
        rows.append([np.nan if c["metrics"][str(k)]["Dice"] is None else c["metrics"][str(k)]["Dice"]
                     for k in classes])
    return cases, np.asarray(rows, dtype=np.float64), classes
