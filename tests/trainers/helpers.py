"""Small readers of what a real run leaves in nnUNet_results."""
import glob
import os

import numpy as np
import torch


def fold_folder(results, dataset_name: str, trainer: str, config: str, fold, plans: str = "nnUNetPlans") -> str:
    return os.path.join(str(results), dataset_name, f"{trainer}__{plans}__{config}", f"fold_{fold}")


def stage1_log_text(fold_dir: str) -> str:
    logs = sorted(glob.glob(os.path.join(fold_dir, "pretraining", "training_log_*.txt")))
    return "".join(open(p).read() for p in logs)


def stage2_log_text(fold_dir: str) -> str:
    logs = sorted(glob.glob(os.path.join(fold_dir, "training_log_*.txt")))
    return "".join(open(p).read() for p in logs)


def load_weights_only(path: str) -> dict:
    """Stage-1 checkpoints must load with weights_only=True on the CPU (docs/architecture.md, Checkpoints)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def make_trainer(planned, trainer_cls, monkeypatch, results, config: str = "3d_fullres", fold=0,
                 continue_training: bool = False, plans: dict = None):
    """Build one of our trainers in-process exactly as nnU-Net's get_trainer_from_args does."""
    monkeypatch.setenv("nnUNet_raw", planned.raw)
    monkeypatch.setenv("nnUNet_preprocessed", planned.preprocessed)
    monkeypatch.setenv("nnUNet_results", str(results))
    plans = dict(plans or planned.plans())
    plans["continue_training"] = continue_training
    return trainer_cls(plans=plans, configuration=config, fold=fold, dataset_json=planned.dataset_json(),
                       device=torch.device("cpu"))


def relative_distances(weights: dict, reference: dict) -> dict[str, float]:
    """||w - ref|| / ||ref|| for every conv and transposed-conv weight (ndim >= 3) but the seg_layers.

    Only these tensors tell two initialisations apart (instance-norm weights and biases start at 1 and 0 in
    every one); two independent He initialisations of such a tensor are about sqrt(2) apart by this measure.
    """
    return {k: ((weights[k].float() - ref.float()).norm() / ref.float().norm()).item()
            for k, ref in reference.items() if ref.ndim >= 3 and ".seg_layers." not in k}


def assert_same(a, b, where: str = "") -> None:
    """Nested equality of checkpoint contents (tensors exactly equal)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


def assert_cnn_handover(state: dict, weights: dict) -> None:
    """Every tensor but the segmentation layers came over unchanged, encoder and decoder alike."""
    moved = [k for k in state if ".seg_layers." not in k]
    assert any(k.startswith("encoder.") for k in moved) and any(k.startswith("decoder.") for k in moved)
    for key in moved:
        assert torch.equal(state[key], weights[key]), key
