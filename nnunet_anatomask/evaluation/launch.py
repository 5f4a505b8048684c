"""One seeded stage-1 or stage-2 run, as the harness starts it (a process of its own):

    python -m nnunet_anatomask.evaluation.launch train|pretrain DATASET CONFIG FOLD -tr TRAINER -p PLANS
        -device DEVICE [--c] --seed S [--threads N] [--initial-lr LR] [--pretrained-weights PATH]

``train`` calls nnU-Net's ``run_training`` (the function behind ``nnUNetv2_train``), ``pretrain`` what
``nnUNetv2_pretrain`` calls (``trainer.run_pretraining``), after seeding Python's, NumPy's and torch's global
generators. nnU-Net seeds nothing itself; its data loader and augmentation draw from these generators (with
nnUNet_n_proc_DA=0 all in this process), so two runs with one seed see the same batches (common random numbers
for Scratch and a scheme) and different seeds give the variation between training runs.

``--threads``: torch CPU threads. nnU-Net's console script takes every core on a CPU; on a 2-core machine shared
with other work one thread per run is much faster per iteration (measured in docs/results.md), so the harness
passes 1.
``--initial-lr`` sets stage 2's start learning rate through the user knob ``nnUNet_anatomask_finetune_lr`` in this
process's environment, for the harness's learning-rate comparison; without it the trainer's own recipe holds.
``--pretrained-weights`` is nnUNetv2_train's ``-pretrained_weights`` (a pool's stage-1 checkpoint for
nnUNetTrainerFinetune).
"""
from __future__ import annotations

import argparse
import os
import random
from typing import Optional, Sequence

from nnunet_anatomask.errors import PluginError
from nnunet_anatomask.evaluation.errors import EvaluationError


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def trainer_class(name: str) -> type:
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    try:
        cls = recursive_find_trainer_class_by_name(name)
    except RuntimeError:  # nnU-Net's "Could not find requested nnunet trainer"
        cls = None
    if cls is None:
        raise EvaluationError(f"no nnU-Net trainer named {name!r}. Fix: check -tr (and that the plugin is "
                              f"installed in this environment).")
    return cls


def set_start_lr(cls: type, lr: float) -> None:
    """Stage 2's start lr for the trainers built in this process, by the knob every stage-2 trainer of ours reads."""
    from nnunet_anatomask import knobs
    from nnunet_anatomask.trainers.stage2 import Stage2Mixin
    if not issubclass(cls, Stage2Mixin):
        raise EvaluationError(f"--initial-lr needs one of this plugin's stage-2 trainers (they read "
                              f"{knobs.FINETUNE_LR}), not {cls.__name__}. Fix: name such a trainer with -tr.")
    os.environ[knobs.FINETUNE_LR] = repr(lr)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m nnunet_anatomask.evaluation.launch",
                                description="One seeded stage-1 (pretrain) or stage-2 (train) run.")
    p.add_argument("stage", choices=("train", "pretrain"))
    p.add_argument("dataset_name_or_id")
    p.add_argument("configuration")
    p.add_argument("fold")
    p.add_argument("-tr", required=True)
    p.add_argument("-p", default="nnUNetPlans")
    p.add_argument("-device", default="cuda", choices=("cpu", "cuda", "mps"))
    p.add_argument("--c", action="store_true", help="continue from the run's latest checkpoint")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--initial-lr", type=float, default=None)
    p.add_argument("--pretrained-weights", default=None, help="nnUNetv2_train's -pretrained_weights")
    return p.parse_args(argv)


def run(a: argparse.Namespace) -> None:
    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    seed_everything(a.seed)
    cls = trainer_class(a.tr)
    if a.initial_lr is not None:
        set_start_lr(cls, a.initial_lr)
    fold = a.fold if a.fold == "all" else int(a.fold)
    device = torch.device(a.device)
    if a.stage == "train":
        from nnunetv2.run.run_training import run_training
        run_training(a.dataset_name_or_id, a.configuration, fold, a.tr, a.p, a.pretrained_weights,
                     continue_training=a.c, device=device)
    else:
        from nnunetv2.run.run_training import get_trainer_from_args
        from nnunet_anatomask.cli import scheme_trainer_class
        scheme_trainer_class(a.tr)  # a CommandError (a PluginError) names the fix
        get_trainer_from_args(a.dataset_name_or_id, a.configuration, fold, a.tr, a.p, a.c,
                              device=device).run_pretraining()


def main(argv: Optional[Sequence[str]] = None) -> None:
    try:
        run(parse_args(argv))
    except (EvaluationError, PluginError) as e:
        raise SystemExit(f"launch: {e}") from None


if __name__ == "__main__":
    main()
