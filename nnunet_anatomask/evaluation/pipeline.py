"""The evaluation run, step by step; each step is skipped when its output exists, so a rerun resumes.

1. data: the raw dataset (``tiny``: generated ellipsoids; ``cpu``/``gpu``: real brain anatomy from
   ``anatomy_dataset``); test cases live only in imagesTs/labelsTs.
2. plan: ``nnUNetv2_plan_and_preprocess -c CONFIG`` once, and for a size with capped widths a derived plans file
   (``plans.py``).
3. splits: ``splits_final.json``, fold k = label fraction k (``splits.py``).
4. stage 1: ``nnUNetv2_pretrain D C all -tr nnUNetTrainer<Scheme>`` once per scheme, on all training images.
5. stage 2: ``nnUNetv2_train D C k -tr TRAINER`` per fraction for every scheme trainer (it finds fold_all's
   stage-1 checkpoint) and for ``nnUNetTrainerScratch`` (same plans, budget, folds).
6. predict the test images with each fold and evaluate them (``prediction.py``).
7. report (``report.py``).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from nnunet_anatomask.evaluation import commands
from nnunet_anatomask.evaluation.errors import EvaluationError
from nnunet_anatomask.evaluation.layout import Layout
from nnunet_anatomask.evaluation.plans import write_capped_plans
from nnunet_anatomask.evaluation.prediction import predict_and_evaluate
from nnunet_anatomask.evaluation.protocol import Size
from nnunet_anatomask.evaluation.splits import fraction_counts, make_splits, write_splits
from nnunet_anatomask.evaluation.trainer_names import SCRATCH


@dataclass
class Run:
    size: Size
    out: str
    trainers: list[str]            # scheme trainers (without Scratch)
    fractions: list[float]
    device: str
    log: Callable[[str], None] = print
    timings: dict = field(default_factory=dict)

    @property
    def layout(self) -> Layout:
        return Layout(self.out, self.size.dataset, self.size.plans_name, self.size.configuration)

    def all_trainers(self) -> list[str]:
        return [SCRATCH, *self.trainers]

    def settings(self) -> dict:
        """What the finished steps depend on (``record.check_same_run``)."""
        s = self.size
        return {"size": s.name, "dataset": s.dataset, "configuration": s.configuration, "plans": s.plans_name,
                "pretrain_epochs": s.pretrain_epochs, "finetune_epochs": s.finetune_epochs,
                "iters_per_epoch": s.iters_per_epoch, "fractions": list(self.fractions)}

    # --- running things -------------------------------------------------------------------------------------
    def nnunet(self, log_name: str, args: list, training: bool) -> None:
        env = commands.nnunet_environment(self.layout, self.size, self.device, training)
        commands.run_logged(log_name, args, env, self.layout.logs, self.log)

    def step(self, key: str, done: bool, fn, *args) -> None:
        if done:
            self.log(f"[skip] {key} (done)")
            return
        self.log(f"[run ] {key}")
        t0 = time.time()
        fn(*args)
        self.timings[key] = round(time.time() - t0, 1)
        self.log(f"[done] {key} in {self.timings[key]:.0f} s")
        self._save_timings()

    def _save_timings(self) -> None:
        path = os.path.join(self.out, "timings.json")
        old = {}
        if os.path.isfile(path):
            with open(path) as f:
                old = json.load(f)
        old.update(self.timings)
        with open(path, "w") as f:
            json.dump(old, f, indent=1)

    # --- 1. data --------------------------------------------------------------------------------------------
    def data_done(self) -> bool:
        folder = self.layout.raw_dataset
        if self.size.data == "synthetic":
            return os.path.isfile(os.path.join(folder, "dataset.json"))
        prov = os.path.join(folder, "provenance.json")
        if not os.path.isfile(prov):
            return False
        with open(prov) as f:
            return bool(json.load(f).get("complete"))

    def build_data(self) -> None:
        s = self.size
        if s.data == "synthetic":
            from nnunet_anatomask.example_data import make_example_dataset
            make_example_dataset(self.layout.raw, s.dataset_id, s.dataset_name, num_train=s.num_train,
                                 num_test=s.num_test, shape=(12, 32, 32), spacing=(1.0, 1.0, 1.0))
        else:
            from nnunet_anatomask.evaluation.anatomy_dataset import build_anatomy_dataset
            build_anatomy_dataset(self.layout.raw, s.dataset_id, s.dataset_name, s.num_train, s.num_test,
                                  s.spacing, log=lambda m: self.log("  " + m))

    def train_cases(self) -> list[str]:
        ending = ".nii.gz"
        folder = os.path.join(self.layout.raw_dataset, "labelsTr")
        return sorted(f[: -len(ending)] for f in os.listdir(folder) if f.endswith(ending))

    def labels(self) -> dict:
        with open(os.path.join(self.layout.raw_dataset, "dataset.json")) as f:
            return {int(v): k for k, v in json.load(f)["labels"].items() if int(v) != 0}

    # --- 2. plan --------------------------------------------------------------------------------------------
    def plan_done(self) -> bool:
        base = self.layout.plans_file("nnUNetPlans")
        if not (os.path.isfile(base) and os.path.isfile(self.layout.plans_file())):
            return False
        with open(base) as f:
            ident = json.load(f)["configurations"][self.size.configuration]["data_identifier"]
        data = os.path.join(self.layout.pre_dataset, ident)
        return os.path.isdir(data) and all(os.path.isfile(os.path.join(data, c + ".pkl"))
                                           for c in self.train_cases())

    def plan(self) -> None:
        s = self.size
        self.nnunet("plan_and_preprocess", ["nnUNetv2_plan_and_preprocess", "-d", s.dataset_id, "-c",
                                            s.configuration, "-np", 1 if self.device == "cpu" else 4],
                    training=False)
        if s.plans_name != "nnUNetPlans":
            write_capped_plans(self.layout.plans_file("nnUNetPlans"), self.layout.plans_file(), s.configuration,
                               s.plans_name, s.max_features, s.max_batch_size)

    # --- 3. splits ------------------------------------------------------------------------------------------
    def counts(self) -> list[int]:
        return fraction_counts(self.fractions, self.size.num_train - self.size.num_val)

    def splits(self) -> list[dict]:
        return make_splits(self.train_cases(), self.size.num_val, self.counts())

    # --- 4. stage 1 -----------------------------------------------------------------------------------------
    def pretrain(self, trainer: str) -> None:
        latest = os.path.join(os.path.dirname(self.layout.stage1_checkpoint(trainer)), "checkpoint_latest.pth")
        s = self.size
        self.nnunet(f"pretrain_{trainer}", ["nnUNetv2_pretrain", s.dataset_id, s.configuration, "all", "-tr",
                                            trainer, "-p", s.plans_name, "-device", self.device,
                                            *(["--c"] if os.path.isfile(latest) else [])], training=True)

    # --- 5. stage 2 -----------------------------------------------------------------------------------------
    def train(self, trainer: str, k: int) -> None:
        if trainer != SCRATCH and not os.path.isfile(self.layout.stage1_checkpoint(trainer)):
            raise EvaluationError(f"no stage-1 checkpoint {self.layout.stage1_checkpoint(trainer)}. Fix: rerun "
                                  f"without --stop-after (stage 1 runs first).")
        latest = os.path.join(self.layout.fold_dir(trainer, k), "checkpoint_latest.pth")
        s = self.size
        self.nnunet(f"train_{trainer}_fold{k}", ["nnUNetv2_train", s.dataset_id, s.configuration, k, "-tr",
                                                 trainer, "-p", s.plans_name, "-device", self.device,
                                                 *(["--c"] if os.path.isfile(latest) else [])], training=True)

    # --- orchestration --------------------------------------------------------------------------------------
    def execute(self, stop_after: Optional[str] = None) -> Optional[str]:
        """Every step not yet done; returns None, or the folder of the step named by ``stop_after``."""
        lay = self.layout
        counts = self.counts()  # checks the fractions before any work
        self.step("data", self.data_done(), self.build_data)
        if stop_after == "data":
            return lay.raw_dataset
        self.step("plan_and_preprocess", self.plan_done(), self.plan)
        write_splits(os.path.join(lay.pre_dataset, "splits_final.json"), self.splits())
        if stop_after == "plan":
            return lay.pre_dataset
        self.log(f"label fractions {self.fractions} -> labelled cases {counts} of "
                 f"{self.size.num_train - self.size.num_val}; validation cases {self.splits()[0]['val']}")
        for tr in self.trainers:
            self.step(f"stage1 {tr}", os.path.isfile(lay.stage1_checkpoint(tr)), self.pretrain, tr)
        if stop_after == "stage1":
            return os.path.join(lay.results, lay.dataset)
        for k in range(len(self.fractions)):
            for tr in self.all_trainers():
                self.step(f"stage2 {tr} fold {k} ({counts[k]} labelled)",
                          os.path.isfile(lay.final_checkpoint(tr, k)), self.train, tr, k)
                self.step(f"predict+evaluate {tr} fold {k}", os.path.isfile(lay.summary(tr, k)),
                          predict_and_evaluate, lay, tr, k, self.device, self.labels(), self.log)
        return None
