"""Predict the test images with one trained fold (nnU-Net's ``nnUNetPredictor``, the code behind
``nnUNetv2_predict``) and evaluate them; the folder appears only when both are complete. The harness runs it as
a process of its own, so that steps can run side by side:

    python -m nnunet_anatomask.evaluation.prediction OUT DATASET PLANS CONFIGURATION ARM FOLD DEVICE [--threads N]
        [--pool POOL_DATASET]

ARM: a trainer, or a trainer with its stage-1 factor (``layout.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from typing import Optional, Sequence

from nnunet_anatomask.evaluation.errors import EvaluationError
from nnunet_anatomask.evaluation.layout import Layout
from nnunet_anatomask.evaluation.metrics import evaluate_folder


def dataset_labels(layout: Layout) -> dict:
    """{label value: name} of the foreground classes in the raw dataset.json."""
    with open(os.path.join(layout.raw_dataset, "dataset.json")) as f:
        return {int(v): k for k, v in json.load(f)["labels"].items() if int(v) != 0}


def predict_and_evaluate(layout: Layout, trainer: str, fold: int, device: str) -> None:
    """imagesTs through fold ``fold``'s checkpoint_final.pth of arm ``trainer`` (mirroring on), then nnU-Net's
    metrics against labelsTs, in OUT/predictions/<arm>/fold_<fold>."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    final = layout.pred_dir(trainer, fold)
    partial = final + ".partial"
    os.makedirs(partial, exist_ok=True)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=device != "cpu", device=torch.device(device),
                                verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(layout.model_dir(trainer), use_folds=(fold,),
                                                   checkpoint_name="checkpoint_final.pth")
    predictor.predict_from_files_sequential(os.path.join(layout.raw_dataset, "imagesTs"), partial,
                                            save_probabilities=False, overwrite=False)
    evaluate_folder(os.path.join(layout.raw_dataset, "labelsTs"), partial, dataset_labels(layout))
    if os.path.isdir(final):
        shutil.rmtree(final)
    os.replace(partial, final)


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m nnunet_anatomask.evaluation.prediction",
                                description="Predict and evaluate the test images with one trained fold.")
    for name in ("out", "dataset", "plans", "configuration", "trainer"):
        p.add_argument(name)
    p.add_argument("fold", type=int)
    p.add_argument("device", choices=("cpu", "cuda", "mps"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--pool", default=None, help="the pool dataset stage 1 ran on (--size cpu-pool)")
    a = p.parse_args(argv)
    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        predict_and_evaluate(Layout(a.out, a.dataset, a.plans, a.configuration, a.pool), a.trainer, a.fold, a.device)
    except EvaluationError as e:
        raise SystemExit(f"prediction: {e}") from None


if __name__ == "__main__":
    main()
