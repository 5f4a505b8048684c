"""Predict the test images with one trained fold (nnU-Net's ``nnUNetPredictor`` in process, the code behind
``nnUNetv2_predict``) and evaluate them; the folder appears only when both are complete."""
from __future__ import annotations

import contextlib
import os
import shutil

from nnunet_anatomask.evaluation.layout import Layout
from nnunet_anatomask.evaluation.metrics import evaluate_folder


def predict_and_evaluate(layout: Layout, trainer: str, fold: int, device: str, labels: dict, log) -> None:
    """imagesTs through fold ``fold``'s checkpoint_final.pth (mirroring on), then nnU-Net's metrics against
    labelsTs; nnU-Net's chatter goes to OUT/logs."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    final = layout.pred_dir(trainer, fold)
    partial = final + ".partial"
    os.makedirs(partial, exist_ok=True)
    os.makedirs(layout.logs, exist_ok=True)
    logfile = os.path.join(layout.logs, f"predict_{trainer}_fold{fold}.log")
    log(f"  nnUNetPredictor({layout.model_dir(trainer)}, fold {fold}) on imagesTs   (log: {logfile})")
    with open(logfile, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                    perform_everything_on_device=device != "cpu", device=torch.device(device),
                                    verbose=False, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(layout.model_dir(trainer), use_folds=(fold,),
                                                       checkpoint_name="checkpoint_final.pth")
        predictor.predict_from_files_sequential(os.path.join(layout.raw_dataset, "imagesTs"), partial,
                                                save_probabilities=False, overwrite=False)
        evaluate_folder(os.path.join(layout.raw_dataset, "labelsTs"), partial, labels)
    if os.path.isdir(final):
        shutil.rmtree(final)
    os.replace(partial, final)
