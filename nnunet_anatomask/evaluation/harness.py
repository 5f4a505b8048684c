"""Scheme-vs-scratch evaluation through the real nnU-Net pipeline (``python -m nnunet_anatomask.evaluate``).

Steps (each skipped when its output exists, so a rerun resumes):

1. data: the raw dataset (``--size tiny``: generated ellipsoids; ``cpu``/``gpu``: real brain anatomy from
   ``anatomy_dataset``) in ``OUT/nnUNet_raw``; test cases live only in imagesTs/labelsTs.
2. plan: ``nnUNetv2_plan_and_preprocess -c CONFIG`` once; for a size with capped widths, a plans file derived
   from nnUNetPlans (same ``data_identifier``, so the preprocessed data is shared; new ``plans_name``).
3. splits: ``splits_final.json`` with fold k = label fraction k: a fixed validation set of training cases and
   nested labelled subsets (10 % within 25 % within 100 % of the other training cases, as case counts).
4. stage 1: ``nnUNetv2_pretrain D C all -tr nnUNetTrainer<Scheme>`` once per scheme, on all training images.
5. stage 2: ``nnUNetv2_train D C k -tr TRAINER`` per fraction for every scheme trainer (finds fold_all's stage-1
   checkpoint) and ``nnUNetTrainerScratch`` (same plans, budget, folds). Every trainer has its own results folder.
6. predict the test images with each fold_k model (nnU-Net's ``nnUNetPredictor``, in process) and evaluate with
   nnU-Net's own per-case ``compute_metrics`` (the function behind ``nnUNetv2_evaluate_folder``).
7. report: ``OUT/report/results.md`` (mean Dice per trainer x fraction, difference to scratch with a 95 % paired
   bootstrap interval over test cases), ``per_class_dice.csv``, ``per_case_dice.csv``, ``dice_vs_fraction.png``.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Optional, Sequence

import numpy as np

SCRATCH = "nnUNetTrainerScratch"
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
DEFAULT_FRACTIONS = (0.1, 0.25, 1.0)


@dataclass(frozen=True)
class Size:
    """One budget. Iterations per stage = epochs x iters_per_epoch (the plugin's knobs)."""
    name: str
    data: str                      # 'synthetic' (example_data) or 'anatomy' (anatomy_dataset)
    dataset_id: int
    dataset_name: str
    num_train: int
    num_test: int
    num_val: int                   # fixed validation cases (training images, never in a labelled fraction)
    configuration: str
    spacing: float = 2.0           # anatomy: base voxel spacing in mm
    max_features: Optional[int] = None   # cap on features_per_stage (None: nnUNetPlans as planned)
    max_batch_size: Optional[int] = None
    pretrain_epochs: int = 1000
    finetune_epochs: int = 1000
    iters_per_epoch: int = 250
    save_every: int = 50
    fractions: tuple = DEFAULT_FRACTIONS
    note: str = ""

    @property
    def plans_name(self) -> str:
        if self.max_features is None and self.max_batch_size is None:
            return "nnUNetPlans"
        parts = [f"F{self.max_features}" if self.max_features else "", f"B{self.max_batch_size}"
                 if self.max_batch_size else ""]
        return "nnUNetPlansCapped" + "".join(parts)


SIZES = {
    "tiny": Size("tiny", "synthetic", 980, "EvalTiny", num_train=8, num_test=4, num_val=2, configuration="2d",
                 max_features=16, max_batch_size=4, pretrain_epochs=1, finetune_epochs=1, iters_per_epoch=2,
                 save_every=1, fractions=(0.25, 1.0),
                 note="smoke run: generated ellipsoids, 1 epoch x 2 iterations per stage, 2 label fractions (each "
                      "fraction costs 3 nnUNetv2_train calls); its numbers mean nothing"),
    "cpu": Size("cpu", "anatomy", 981, "BrainAnatomy", num_train=40, num_test=20, num_val=4, configuration="2d",
                spacing=2.0, max_features=64, max_batch_size=16, pretrain_epochs=40, finetune_epochs=12,
                iters_per_epoch=25, save_every=4,
                note="brains at 2 mm, 2d configuration, widths capped at 64 and batch at 16 (a 2-core CPU), "
                     "1000 stage-1 and 300 stage-2 iterations"),
    "gpu": Size("gpu", "anatomy", 982, "BrainAnatomy1mm", num_train=100, num_test=30, num_val=10,
                configuration="3d_fullres", spacing=1.0, pretrain_epochs=1000, finetune_epochs=250,
                iters_per_epoch=250, save_every=50,
                note="brains at 1 mm, 3d_fullres with nnUNetPlans as planned, 250k stage-1 and 62.5k stage-2 "
                     "iterations per run"),
}


def scheme_trainers(schemes: Optional[Sequence[str]] = None) -> list[str]:
    """'nnUNetTrainer' + scheme name for every scheme in SCHEMES (or the given ones, validated)."""
    from nnunet_anatomask.pretraining.schemes import SCHEMES
    names = list(SCHEMES) if not schemes else list(schemes)
    unknown = [s for s in names if s not in SCHEMES]
    if unknown:
        raise SystemExit(f"unknown scheme(s) {unknown}; known: {sorted(SCHEMES)}")
    return ["nnUNetTrainer" + s for s in names]


def fraction_counts(fractions: Sequence[float], pool: int) -> list[int]:
    """Labelled-case counts: max(1, round(f * pool)), strictly from the labelled pool."""
    counts = []
    for f in fractions:
        if not 0 < f <= 1:
            raise SystemExit(f"label fraction {f} must be in (0, 1]")
        counts.append(min(pool, max(1, int(math.floor(f * pool + 0.5)))))
    return counts


def make_splits(train_cases: Sequence[str], num_val: int, counts: Sequence[int], seed: int = 0) -> list[dict]:
    """Fold k = counts[k] labelled cases; nested subsets of one seeded permutation; the same validation cases."""
    order = [train_cases[i] for i in np.random.default_rng(seed).permutation(len(train_cases))]
    val, pool = sorted(order[:num_val]), order[num_val:]
    return [{"train": sorted(pool[:n]), "val": val} for n in counts]


# --- paired bootstrap --------------------------------------------------------------------------------------------
def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> tuple[float, float, float]:
    """mean(a - b) and its percentile interval over ``resamples`` paired resamples of the cases."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError("paired_bootstrap needs two equally long, non-empty sequences")
    idx = np.random.default_rng(seed).integers(0, len(d), size=(resamples, len(d)))
    means = d[idx].mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(d.mean()), float(lo), float(hi)


# --- the run -------------------------------------------------------------------------------------------------
@dataclass
class Run:
    size: Size
    out: str
    trainers: list[str]            # scheme trainers (without scratch)
    fractions: list[float]
    device: str
    log: callable = print
    timings: dict = field(default_factory=dict)

    # folders
    @property
    def raw(self): return os.path.join(self.out, "nnUNet_raw")

    @property
    def preprocessed(self): return os.path.join(self.out, "nnUNet_preprocessed")

    @property
    def results(self): return os.path.join(self.out, "nnUNet_results")

    @property
    def dataset(self): return f"Dataset{self.size.dataset_id:03d}_{self.size.dataset_name}"

    @property
    def raw_dataset(self): return os.path.join(self.raw, self.dataset)

    @property
    def pre_dataset(self): return os.path.join(self.preprocessed, self.dataset)

    @property
    def report_dir(self): return os.path.join(self.out, "report")

    def model_dir(self, trainer: str) -> str:
        return os.path.join(self.results, self.dataset,
                            f"{trainer}__{self.size.plans_name}__{self.size.configuration}")

    def pred_dir(self, trainer: str, k: int) -> str:
        return os.path.join(self.out, "predictions", trainer, f"fold_{k}")

    # environment of every nnU-Net call
    def env(self, training: bool) -> dict:
        from nnunet_anatomask import knobs
        env = dict(os.environ)
        env.update({"nnUNet_raw": self.raw, "nnUNet_preprocessed": self.preprocessed,
                    "nnUNet_results": self.results, "PYTHONUNBUFFERED": "1",
                    knobs.PRETRAIN_EPOCHS: str(self.size.pretrain_epochs),
                    knobs.FINETUNE_EPOCHS: str(self.size.finetune_epochs),
                    knobs.ITERS_PER_EPOCH: str(self.size.iters_per_epoch),
                    knobs.SAVE_EVERY: str(self.size.save_every)})
        if self.device == "cpu":
            env["nnUNet_def_n_proc"] = "1"
            if training:
                env["nnUNet_n_proc_DA"] = "0"  # no augmentation workers; it must stay unset for preprocessing
            else:
                env.pop("nnUNet_n_proc_DA", None)
        return env

    def cli(self, name: str, args: list, training: bool) -> None:
        """Run one console script of the venv, its output in OUT/logs/<name>.log; stop the harness if it fails."""
        os.makedirs(os.path.join(self.out, "logs"), exist_ok=True)
        logfile = os.path.join(self.out, "logs", f"{name}.log")
        exe = os.path.join(os.path.dirname(sys.executable), args[0])
        cmd = [exe if os.path.isfile(exe) else args[0], *map(str, args[1:])]
        self.log(f"  $ {' '.join(shlex.quote(str(a)) for a in args)}   (log: {logfile})")
        with open(logfile, "a") as f:
            f.write(f"\n===== {datetime.now().isoformat(timespec='seconds')} {' '.join(cmd)}\n")
            f.flush()
            proc = subprocess.run(cmd, env=self.env(training), stdout=f, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            with open(logfile) as f:
                tail = f.read()[-4000:]
            raise SystemExit(f"{args[0]} failed (exit {proc.returncode}); last lines of {logfile}:\n{tail}\n"
                             f"Fix the cause and rerun the same command: finished steps are skipped.")

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

    # 1. data
    def data_done(self) -> bool:
        if self.size.data == "synthetic":
            return os.path.isfile(os.path.join(self.raw_dataset, "dataset.json"))
        prov = os.path.join(self.raw_dataset, "provenance.json")
        if not os.path.isfile(prov):
            return False
        with open(prov) as f:
            return bool(json.load(f).get("complete"))

    def build_data(self) -> None:
        s = self.size
        if s.data == "synthetic":
            from nnunet_anatomask.example_data import make_example_dataset
            make_example_dataset(self.raw, s.dataset_id, s.dataset_name, num_train=s.num_train,
                                 num_test=s.num_test, shape=(12, 32, 32), spacing=(1.0, 1.0, 1.0))
        else:
            from nnunet_anatomask.evaluation.anatomy_dataset import SourceMissing, build_anatomy_dataset
            try:
                build_anatomy_dataset(self.raw, s.dataset_id, s.dataset_name, s.num_train, s.num_test, s.spacing,
                                      log=lambda m: self.log("  " + m))
            except SourceMissing as e:
                raise SystemExit(f"evaluate: {e}")

    def train_cases(self) -> list[str]:
        ending = ".nii.gz"
        folder = os.path.join(self.raw_dataset, "labelsTr")
        return sorted(f[: -len(ending)] for f in os.listdir(folder) if f.endswith(ending))

    # 2. plan
    def plans_file(self, name: Optional[str] = None) -> str:
        return os.path.join(self.pre_dataset, (name or self.size.plans_name) + ".json")

    def plan_done(self) -> bool:
        base = os.path.join(self.pre_dataset, "nnUNetPlans.json")
        if not (os.path.isfile(base) and os.path.isfile(self.plans_file())):
            return False
        with open(base) as f:
            ident = json.load(f)["configurations"][self.size.configuration]["data_identifier"]
        data = os.path.join(self.pre_dataset, ident)
        return os.path.isdir(data) and all(os.path.isfile(os.path.join(data, c + ".pkl"))
                                           for c in self.train_cases())

    def plan(self) -> None:
        self.cli("plan_and_preprocess", ["nnUNetv2_plan_and_preprocess", "-d", self.size.dataset_id, "-c",
                                         self.size.configuration, "-np", 1 if self.device == "cpu" else 4],
                 training=False)
        if self.size.plans_name != "nnUNetPlans":
            write_capped_plans(self.plans_file("nnUNetPlans"), self.plans_file(), self.size.configuration,
                               self.size.plans_name, self.size.max_features, self.size.max_batch_size)

    # 3. splits
    def splits(self) -> tuple[list[dict], list[int]]:
        pool = self.size.num_train - self.size.num_val
        counts = fraction_counts(self.fractions, pool)
        return make_splits(self.train_cases(), self.size.num_val, counts), counts

    def write_splits(self) -> None:
        splits, _ = self.splits()
        path = os.path.join(self.pre_dataset, "splits_final.json")
        if os.path.isfile(path):
            with open(path) as f:
                old = json.load(f)
            if old != splits:
                raise SystemExit(f"{path} holds other splits than this run's fractions {self.fractions}: models "
                                 f"trained on them would be mixed up. Use another --output (or delete the file "
                                 f"and the results trained on it).")
            return
        with open(path, "w") as f:
            json.dump(splits, f, indent=2)

    # 4. stage 1
    def stage1_checkpoint(self, trainer: str) -> str:
        return os.path.join(self.model_dir(trainer), "fold_all", "pretraining", "checkpoint_final.pth")

    def pretrain(self, trainer: str) -> None:
        resume = os.path.isfile(os.path.join(os.path.dirname(self.stage1_checkpoint(trainer)),
                                             "checkpoint_latest.pth"))
        self.cli(f"pretrain_{trainer}", ["nnUNetv2_pretrain", self.size.dataset_id, self.size.configuration, "all",
                                         "-tr", trainer, "-p", self.size.plans_name, "-device", self.device,
                                         *(["--c"] if resume else [])], training=True)

    # 5. stage 2
    def final_checkpoint(self, trainer: str, k: int) -> str:
        return os.path.join(self.model_dir(trainer), f"fold_{k}", "checkpoint_final.pth")

    def train(self, trainer: str, k: int) -> None:
        if trainer != SCRATCH and not os.path.isfile(self.stage1_checkpoint(trainer)):
            raise SystemExit(f"no stage-1 checkpoint {self.stage1_checkpoint(trainer)}")
        latest = os.path.join(self.model_dir(trainer), f"fold_{k}", "checkpoint_latest.pth")
        self.cli(f"train_{trainer}_fold{k}", ["nnUNetv2_train", self.size.dataset_id, self.size.configuration, k,
                                              "-tr", trainer, "-p", self.size.plans_name, "-device", self.device,
                                              *(["--c"] if os.path.isfile(latest) else [])], training=True)

    # 6. predict + evaluate
    def predict(self, trainer: str, k: int) -> None:
        """Predict imagesTs with fold k's final checkpoint, then evaluate; nnU-Net's chatter goes to the log."""
        final = self.pred_dir(trainer, k)
        partial = final + ".partial"
        os.makedirs(partial, exist_ok=True)
        os.makedirs(os.path.join(self.out, "logs"), exist_ok=True)
        logfile = os.path.join(self.out, "logs", f"predict_{trainer}_fold{k}.log")
        self.log(f"  nnUNetPredictor({self.model_dir(trainer)}, fold {k}) on imagesTs   (log: {logfile})")
        with open(logfile, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            import torch
            from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
            predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                        perform_everything_on_device=self.device != "cpu",
                                        device=torch.device(self.device), verbose=False, allow_tqdm=False)
            predictor.initialize_from_trained_model_folder(self.model_dir(trainer), use_folds=(k,),
                                                           checkpoint_name="checkpoint_final.pth")
            predictor.predict_from_files_sequential(os.path.join(self.raw_dataset, "imagesTs"), partial,
                                                    save_probabilities=False, overwrite=False)
            evaluate_folder(os.path.join(self.raw_dataset, "labelsTs"), partial, self.labels())
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.replace(partial, final)

    def labels(self) -> dict:
        with open(os.path.join(self.raw_dataset, "dataset.json")) as f:
            return {int(v): k for k, v in json.load(f)["labels"].items() if int(v) != 0}

    # orchestration
    def all_trainers(self) -> list[str]:
        return [SCRATCH, *self.trainers]

    def execute(self, stop_after: Optional[str] = None) -> str:
        t0 = time.time()
        self.step("data", self.data_done(), self.build_data)
        if stop_after == "data":
            return self.raw_dataset
        self.step("plan_and_preprocess", self.plan_done(), self.plan)
        self.write_splits()
        if stop_after == "plan":
            return self.pre_dataset
        splits, counts = self.splits()
        self.log(f"label fractions {self.fractions} -> labelled cases {counts} of "
                 f"{self.size.num_train - self.size.num_val}; validation cases {splits[0]['val']}")
        for tr in self.trainers:
            self.step(f"stage1 {tr}", os.path.isfile(self.stage1_checkpoint(tr)), self.pretrain, tr)
        if stop_after == "stage1":
            return os.path.dirname(self.model_dir(self.trainers[0])) if self.trainers else self.results
        for k in range(len(self.fractions)):
            for tr in self.all_trainers():
                self.step(f"stage2 {tr} fold {k} ({counts[k]} labelled)",
                          os.path.isfile(self.final_checkpoint(tr, k)), self.train, tr, k)
                self.step(f"predict+evaluate {tr} fold {k}",
                          os.path.isfile(os.path.join(self.pred_dir(tr, k), "summary.json")), self.predict, tr, k)
        report = write_report(self, counts, time.time() - t0)
        self.log(f"report: {report}")
        return report


def check_same_run(run: Run) -> None:
    """OUT/run.json records what the finished steps were trained with; a rerun must ask for the same (schemes may
    be added), or the skipped steps would silently belong to another experiment."""
    s = run.size
    settings = {"size": s.name, "dataset": run.dataset, "configuration": s.configuration, "plans": s.plans_name,
                "pretrain_epochs": s.pretrain_epochs, "finetune_epochs": s.finetune_epochs,
                "iters_per_epoch": s.iters_per_epoch, "fractions": list(run.fractions)}
    path = os.path.join(run.out, "run.json")
    if os.path.isfile(path):
        with open(path) as f:
            old = json.load(f)
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            changes = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in diff.items())
            raise SystemExit(f"{run.out} holds a run with other settings ({changes}). Use another --output, or "
                             f"repeat the original options.")
    with open(path, "w") as f:
        json.dump(settings, f, indent=2)


# --- plans with capped widths ---------------------------------------------------------------------------------
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


# --- nnU-Net's evaluation ---------------------------------------------------------------------------------------
def evaluate_folder(ref_folder: str, pred_folder: str, labels: dict) -> dict:
    """nnU-Net's compute_metrics on every predicted case (in process, no worker pool), saved as summary.json in
    the layout of compute_metrics_on_folder (metric_per_case, mean, foreground_mean)."""
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics, save_summary_json
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.utilities.json_export import recursive_fix_for_json_export
    ending = ".nii.gz"
    refs = sorted(f for f in os.listdir(ref_folder) if f.endswith(ending))
    missing = [f for f in refs if not os.path.isfile(os.path.join(pred_folder, f))]
    if missing:
        raise RuntimeError(f"{pred_folder} lacks predictions for {missing}")
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
    cases, rows = [], []
    classes = sorted(int(k) for k in s["metric_per_case"][0]["metrics"])
    for c in s["metric_per_case"]:
        cases.append(os.path.basename(c["reference_file"]).split(".")[0])
        rows.append([c["metrics"][str(k)]["Dice"] if c["metrics"][str(k)]["Dice"] is not None else np.nan
                     for k in classes])
    return cases, np.asarray(rows, dtype=np.float64), classes


# --- report --------------------------------------------------------------------------------------------------
def short(trainer: str) -> str:
    return trainer[len("nnUNetTrainer"):] if trainer.startswith("nnUNetTrainer") else trainer


def collect(run: Run) -> dict:
    """{(trainer, k): (cases, dice[cases, classes], classes)} for every finished prediction."""
    out = {}
    for tr in run.all_trainers():
        for k in range(len(run.fractions)):
            path = os.path.join(run.pred_dir(tr, k), "summary.json")
            if os.path.isfile(path):
                out[(tr, k)] = case_dice(path)
    return out


def write_report(run: Run, counts: Sequence[int], wall_s: Optional[float]) -> str:
    with warnings.catch_warnings():  # nanmean over classes absent from reference and prediction alike
        warnings.simplefilter("ignore", RuntimeWarning)
        return _write_report(run, counts, wall_s)


def _write_report(run: Run, counts: Sequence[int], wall_s: Optional[float]) -> str:
    os.makedirs(run.report_dir, exist_ok=True)
    data = collect(run)
    labels = run.labels()
    fr = run.fractions
    rows, per_class = {}, []
    for (tr, k), (cases, dice, classes) in data.items():
        per_case = np.nanmean(dice, axis=1)
        rows[(tr, k)] = (cases, per_case)
        for j, c in enumerate(classes):
            per_class.append({"trainer": tr, "fraction": fr[k], "labelled_cases": counts[k], "class_id": c,
                              "class": labels.get(c, str(c)), "mean_dice": float(np.nanmean(dice[:, j])),
                              "test_cases": int(np.sum(~np.isnan(dice[:, j])))})
    with open(os.path.join(run.report_dir, "per_class_dice.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["trainer", "fraction", "labelled_cases", "class_id", "class",
                                          "mean_dice", "test_cases"])
        w.writeheader()
        w.writerows(per_class)
    with open(os.path.join(run.report_dir, "per_case_dice.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trainer", "fraction", "labelled_cases", "case", "mean_dice"])
        for (tr, k), (cases, per_case) in sorted(rows.items()):
            for c, d in zip(cases, per_case):
                w.writerow([tr, fr[k], counts[k], c, f"{d:.6f}"])
    table = {}
    for (tr, k), (cases, per_case) in rows.items():
        entry = {"mean_dice": float(np.mean(per_case)), "test_cases": len(cases)}
        if tr != SCRATCH and (SCRATCH, k) in rows:
            s_cases, s_dice = rows[(SCRATCH, k)]
            if list(s_cases) != list(cases):
                raise RuntimeError(f"{tr} fold {k} and scratch were evaluated on different test cases")
            entry["diff"], entry["ci_low"], entry["ci_high"] = paired_bootstrap(per_case, s_dice)
        table[f"{tr}|{k}"] = entry
    md = render_markdown(run, counts, table, wall_s)
    with open(os.path.join(run.report_dir, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(run.report_dir, "results.json"), "w") as f:
        json.dump({"size": asdict(run.size), "plans_name": run.size.plans_name, "fractions": fr,
                   "labelled_cases": list(counts), "device": run.device, "trainers": run.all_trainers(),
                   "table": table, "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED,
                                                 "level": 0.95}}, f, indent=2)
    plot(run, counts, table, os.path.join(run.report_dir, "dice_vs_fraction.png"))
    return os.path.join(run.report_dir, "results.md")


def render_markdown(run: Run, counts, table: dict, wall_s: Optional[float]) -> str:
    fr = run.fractions
    head = "| trainer | " + " | ".join(f"{f * 100:g} % ({n} case{'s' if n != 1 else ''})"
                                        for f, n in zip(fr, counts)) + " |"
    lines = [head, "|---" * (len(fr) + 1) + "|"]
    for tr in run.all_trainers():
        cells = []
        for k in range(len(fr)):
            e = table.get(f"{tr}|{k}")
            if e is None:
                cells.append("not run")
            elif "diff" in e:
                cells.append(f"{e['mean_dice']:.3f} ({e['diff']:+.3f} [{e['ci_low']:+.3f}, {e['ci_high']:+.3f}])")
            else:
                cells.append(f"{e['mean_dice']:.3f}")
        lines.append(f"| {short(tr)} | " + " | ".join(cells) + " |")
    leak = ""
    prov = os.path.join(run.raw_dataset, "provenance.json")
    if os.path.isfile(prov):
        with open(prov) as f:
            leak = json.load(f).get("leak", "")
    timings_path = os.path.join(run.out, "timings.json")
    total = None
    if os.path.isfile(timings_path):
        with open(timings_path) as f:
            total = sum(json.load(f).values())
    return "\n".join([
        f"# Evaluation: --size {run.size.name}", "",
        f"{run.size.note}.", "",
        f"Mean Dice over the {next(iter(table.values()))['test_cases'] if table else 0} held-out test cases (per "
        f"case: the mean over foreground classes; nnU-Net's Dice, a class absent from both reference and "
        f"prediction is skipped). In brackets: difference to {short(SCRATCH)} on the same fraction, with the 95 % "
        f"paired bootstrap interval over test cases ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}).", "",
        *lines, "",
        f"- dataset: `{run.dataset}` ({run.size.num_train} training images, {run.size.num_val} of them the fixed "
        f"validation set, {run.size.num_test} test cases){'; ' + leak if leak else ''}",
        f"- configuration `{run.size.configuration}`, plans `{run.size.plans_name}`; stage 1: "
        f"{run.size.pretrain_epochs} x {run.size.iters_per_epoch} iterations on all training images; stage 2: "
        f"{run.size.finetune_epochs} x {run.size.iters_per_epoch} iterations",
        f"- device `{run.device}`, {platform.node()} ({os.cpu_count()} CPUs), "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"
        + (f"; wall time of this invocation {wall_s / 60:.1f} min" if wall_s is not None else "")
        + (f"; all steps over all invocations {total / 60:.1f} min" if total else ""),
        "- per-class Dice: `per_class_dice.csv`; per-case: `per_case_dice.csv`; plot: `dice_vs_fraction.png`", ""])


def plot(run: Run, counts, table: dict, path: str) -> None:
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for tr in run.all_trainers():
        ks = [k for k in range(len(run.fractions)) if f"{tr}|{k}" in table]
        if not ks:
            continue
        ax.plot([run.fractions[k] * 100 for k in ks], [table[f"{tr}|{k}"]["mean_dice"] for k in ks], marker="o",
                linestyle="--" if tr == SCRATCH else "-", label=short(tr))
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xticks([f * 100 for f in run.fractions])
    ax.set_xticklabels([f"{f * 100:g} %\n({n})" for f, n in zip(run.fractions, counts)])
    ax.set_xlabel("labelled training cases")
    ax.set_ylabel("mean test Dice")
    ax.set_title(f"Dice vs label fraction (--size {run.size.name})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- CLI -----------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m nnunet_anatomask.evaluate",
                                description="Every masking scheme vs nnUNetTrainerScratch across label fractions, "
                                            "through the real nnU-Net pipeline. Resumable: rerun the same command.")
    p.add_argument("--size", choices=sorted(SIZES), required=True,
                   help="; ".join(f"{k}: {v.note}" for k, v in SIZES.items()))
    p.add_argument("--output", default=None, help="working folder (default ./evaluation_output/<size>)")
    p.add_argument("--schemes", nargs="+", default=None, help="default: every scheme in SCHEMES")
    p.add_argument("--fractions", nargs="+", type=float, default=None,
                   help="label fractions of the labelled training cases (default 0.1 0.25 1.0; tiny: 0.25 1.0)")
    p.add_argument("--budget", nargs=3, type=int, default=None,
                   metavar=("PRETRAIN_EPOCHS", "FINETUNE_EPOCHS", "ITERS_PER_EPOCH"),
                   help="override the size's run lengths (a quick look; the report says so)")
    p.add_argument("--device", choices=("cpu", "cuda", "mps"), default=None,
                   help="default: cuda when available, else cpu")
    p.add_argument("--stop-after", choices=("data", "plan", "stage1"), default=None,
                   help="stop after this step (a later run without it resumes)")
    p.add_argument("--report-only", action="store_true", help="only rewrite the report from finished steps")
    return p.parse_args(argv)


def main(argv=None) -> str:
    a = parse_args(argv)
    size = SIZES[a.size]
    if a.budget:
        if min(a.budget) < 1:
            raise SystemExit("--budget: every value must be >= 1")
        size = replace(size, pretrain_epochs=a.budget[0], finetune_epochs=a.budget[1], iters_per_epoch=a.budget[2],
                       save_every=min(size.save_every, a.budget[0], a.budget[1]),
                       note=size.note + f"; BUDGET OVERRIDDEN with --budget {' '.join(map(str, a.budget))}")
    fractions = list(a.fractions or size.fractions)
    if a.device is None:
        import torch
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    out = os.path.abspath(a.output or os.path.join("evaluation_output", a.size))
    os.makedirs(out, exist_ok=True)
    run = Run(size, out, scheme_trainers(a.schemes), fractions, a.device,
              log=lambda m: print(m, flush=True))
    # nnunetv2.paths reads these at import: set them before the in-process predictor is imported
    os.environ.update({"nnUNet_raw": run.raw, "nnUNet_preprocessed": run.preprocessed,
                       "nnUNet_results": run.results})
    if a.device == "cpu":
        os.environ["nnUNet_def_n_proc"] = "1"
    run.log(f"evaluate --size {a.size}: {size.note}\n  output {out}; trainers {run.all_trainers()}; "
            f"device {a.device}")
    if a.report_only:
        report = write_report(run, run.splits()[1], None)
        run.log(f"report: {report}")
        return report
    check_same_run(run)
    return run.execute(a.stop_after)
