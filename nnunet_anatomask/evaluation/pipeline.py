"""The evaluation run, step by step; each step is skipped when its output exists, so a rerun resumes.

1. data: the raw dataset (``tiny``: generated ellipsoids; ``cpu``/``gpu``: real brain anatomy from
   ``anatomy_dataset``); test cases live only in imagesTs/labelsTs. A pool size also builds its pool's sources
   (``pool_dataset.py``).
2. plan: ``nnUNetv2_plan_and_preprocess -c CONFIG`` once, and for a size with capped widths a derived plans file
   (``plans.py``). A pool size plans the pool instead (``nnUNetv2_plan_and_preprocess_unlabelled -d SOURCES --as
   POOL``), caps its plans, moves them to the labelled dataset and preprocesses that with them
   (``pool_steps.py``), the sequence of docs/pools_and_ddp.md.
3. folds: one nnU-Net fold per stage-2 run (fraction, seed, start lr) in ``splits_final.json`` (``folds.py``,
   ``splits.py``); every trainer trains the same folds (the folds of Scratch's other start lrs: Scratch only).
4. stage 1: ``launch pretrain D C all -tr nnUNetTrainer<Scheme>`` once per scheme and stage-1 length factor
   (``--stage1-factors``: the size's stage-1 epochs x factor), on all training images (a pool size: on the pool).
5. per run, seed by seed, for every arm (Scratch, and each scheme at each factor under each recipe, ``layout.py``,
   ``trainer_names.with_recipes``): stage 2 (``launch train D C FOLD -tr TRAINER``; a scheme trainer, whatever its
   recipe, finds its scheme's fold_all stage-1 checkpoint; with a pool ``-tr nnUNetTrainerFinetune[_<recipe>]
   -pretrained_weights`` the pool's), its learning curve (``curves.py``), and the test images predicted and
   evaluated (``prediction.py``).
6. report (``report.py``).

Steps 4 and 5 are processes of their own; ``jobs`` of them run side by side (ours: with one torch thread each,
two jobs use a 2-core CPU fully). A scheme's stage-2 runs wait for its stage 1; Scratch's need nothing. After a
failure no new step starts, the running ones finish, and the error is raised.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Optional

from nnunet_anatomask.evaluation import commands, curves, pool_steps
from nnunet_anatomask.evaluation.errors import EvaluationError
from nnunet_anatomask.evaluation.estimate import stage1_seconds_left, stage2_seconds
from nnunet_anatomask.evaluation.folds import Stage2Run, assign_folds, load_folds, save_folds, wanted_runs
from nnunet_anatomask.evaluation.layout import Layout, arm_name, split_arm
from nnunet_anatomask.evaluation.plans import write_capped_plans
from nnunet_anatomask.evaluation.protocol import Size
from nnunet_anatomask.evaluation.splits import fraction_counts, make_splits, write_splits
from nnunet_anatomask.evaluation.trainer_names import FULL, SCRATCH, short_name, stage1_trainer, with_recipes
from nnunet_anatomask.progress import Progress

STAGE1_SEED = 0
_STDOUT = threading.Lock()


def print_line(message: str) -> None:
    """Print one whole line. The harness runs steps in threads (``jobs``), and ``print`` writes the text and its
    newline in two calls, so on a pipe two threads' lines can share one ("[run ] a[run ] b")."""
    with _STDOUT:
        sys.stdout.write(message + "\n")
        sys.stdout.flush()


@dataclass
class Run:
    size: Size
    out: str
    trainers: list[str]            # scheme trainers (without Scratch): one stage 1 each
    fractions: list[float]
    seeds: list[int]
    device: str
    lr_study: Optional[float] = None   # a second stage-2 start lr, at the smallest fraction
    jobs: int = 1                      # steps run side by side
    stage1_factors: list = field(default_factory=lambda: [1])   # stage-1 lengths, as factors of the size's
    fraction_seeds: dict = field(default_factory=dict)          # {fraction: seeds} where they differ from seeds
    recipes: list = field(default_factory=lambda: [FULL])   # stage-2 recipes of every scheme (docs/recipes.md)
    scratch_lrs: list = field(default_factory=list)         # Scratch's other start lrs, at the smallest fraction
    log: Callable[[str], None] = print_line
    timings: dict = field(default_factory=dict)
    progress: Optional[Progress] = None  # set by execute: step k of n, elapsed, time left
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def layout(self) -> Layout:
        return Layout(self.out, self.size.dataset, self.size.plans_name, self.size.configuration,
                      self.size.pool_dataset)

    def scheme_arms(self) -> list[str]:
        """Every scheme at every stage-1 factor (``layout.arm_name``)."""
        return [arm_name(tr, f) for f in self.stage1_factors for tr in self.trainers]

    def stage2_trainers(self) -> list[str]:
        """Every scheme arm under every recipe (``nnUNetTrainerAnatoMask_nnssl``, ``..._nnssl_x10``)."""
        return [arm_name(tr, f) for f in self.stage1_factors for tr in with_recipes(self.trainers, self.recipes)]

    def stage1_seconds(self, arm: str) -> float:
        """The expected work left of a scheme arm's stage 1 (``estimate.stage1_seconds_left``)."""
        trainer, factor = split_arm(arm)
        return stage1_seconds_left(self.size, short_name(trainer), factor, self.layout.stage1_latest(arm))

    @staticmethod
    def stage1_arm(arm: str) -> str:
        """The scheme arm whose stage 1 a (recipe) arm fine-tunes from."""
        trainer, factor = split_arm(arm)
        return arm_name(stage1_trainer(trainer), factor)

    def all_trainers(self) -> list[str]:
        """Every arm: Scratch, then the schemes at each stage-1 factor under each recipe."""
        return [SCRATCH, *self.stage2_trainers()]

    def trainers_for(self, r: Stage2Run) -> list[str]:
        """Who trains fold ``r``: every arm, but on a fold of only Scratch's other start lrs only Scratch."""
        if r.initial_lr is not None and r.initial_lr != self.lr_study and r.initial_lr in self.scratch_lrs:
            return [SCRATCH]
        return self.all_trainers()

    def seeds_at(self, fraction: float) -> list[int]:
        return list(self.fraction_seeds.get(fraction, self.seeds))

    def settings(self) -> dict:
        """What finished steps depend on (``record.check_same_run``); fractions, seeds, stage-1 factors, recipes,
        the lr comparison and Scratch's start lrs only add runs, so they may change."""
        s = self.size
        return {"size": s.name, "dataset": s.dataset, "configuration": s.configuration, "plans": s.plans_name,
                "num_val": s.num_val, "pretrain_epochs": s.pretrain_epochs, "finetune_epochs": s.finetune_epochs,
                "iters_per_epoch": s.iters_per_epoch}

    # --- the run table ----------------------------------------------------------------------------------
    @property
    def folds_file(self) -> str:
        return os.path.join(self.out, "folds.json")

    def fold_table(self) -> tuple[list[Stage2Run], list[Stage2Run]]:
        """(every run ever numbered in this folder, the runs this invocation asks for)."""
        self.counts()  # checks the fractions
        return assign_folds(load_folds(self.folds_file), wanted_runs(
            self.fractions, self.seeds, self.lr_study, self.fraction_seeds, self.scratch_lrs))

    def counts(self, fractions=None) -> list[int]:
        return fraction_counts(self.fractions if fractions is None else fractions,
                               self.size.num_train - self.size.num_val)

    # --- running things -------------------------------------------------------------------------------------
    def nnunet(self, log_name: str, args: list, training: bool, results: Optional[str] = None,
               pretrain_epochs: Optional[int] = None) -> float:
        """Run one command with this run's nnU-Net environment (``results``: another results root; a stage-1
        length other than the size's); returns its CPU seconds."""
        env = commands.nnunet_environment(self.layout, self.size, self.device, training, results, pretrain_epochs)
        return commands.run_logged(log_name, args, env, self.layout.logs, self.log)

    @property
    def threads(self) -> list:
        return ["--threads", self.size.threads] if self.size.threads and self.device == "cpu" else []

    def launch(self, log_name: str, stage: str, fold, arm: str, seed: int, resume: bool,
               initial_lr: Optional[float] = None) -> float:
        """One stage-1 (on the pool, if any) or stage-2 run of ``arm``, in its results root, with its stage-1
        length in the environment (a stage-2 run reads the stage-1 budget too)."""
        s, lay = self.size, self.layout
        trainer, factor = split_arm(arm)
        pool_stage1 = stage == "pretrain" and s.pool_id is not None
        dataset = s.pool_id if pool_stage1 else s.dataset_id
        name = trainer if stage == "pretrain" else lay.stage2_trainer(arm)
        args = [sys.executable, "-m", "nnunet_anatomask.evaluation.launch", stage, dataset, s.configuration,
                fold, "-tr", name, "-p", s.plans_name, "-device", self.device, "--seed", seed, *self.threads]
        args += (["--c"] if resume else []) + (["--initial-lr", initial_lr] if initial_lr is not None else [])
        if stage == "train" and name != trainer and not resume:  # a pool: fine-tune from the scheme's pool
            args += ["--pretrained-weights", lay.stage1_checkpoint(arm)]  # checkpoint (resumed: from its own, --c)
        results = lay.stage1_results(factor) if stage == "pretrain" else lay.stage2_results(arm)
        return self.nnunet(log_name, args, True, results, round(s.pretrain_epochs * factor))

    def step(self, key: str, done: bool, fn, *args, work: float = 1.0) -> None:
        """Run ``fn(*args)`` unless done; record its wall and CPU seconds (``fn`` returns those of its process,
        else this process's are counted) in OUT/timings.json. ``work``: its expected seconds, for the time left."""
        if done:
            self.log(f"[skip] {key} (done)")
            if self.progress is not None:
                with self._lock:
                    self.progress.skip(work)  # the estimate counts only the steps this call runs
            return
        self.log(f"[run ] {key}")
        if self.progress is not None:
            with self._lock:
                self.progress.start(key)
        t0, own = time.time(), resource.getrusage(resource.RUSAGE_SELF)
        cpu = fn(*args)
        if cpu is None:
            now = resource.getrusage(resource.RUSAGE_SELF)
            cpu = now.ru_utime + now.ru_stime - own.ru_utime - own.ru_stime
        with self._lock:
            self.timings[key] = {"wall_s": round(time.time() - t0, 1), "cpu_s": round(cpu, 1)}
            self.log(f"[done] {key} in {self.timings[key]['wall_s']:.0f} s (CPU {cpu:.0f} s)")
            self._save_timings()
            if self.progress is not None:
                self.progress.done(work)

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
            complete = bool(json.load(f).get("complete"))
        return complete and (self.size.pool_id is None or pool_steps.pool_data_done(self))

    def build_data(self) -> None:
        s = self.size
        if s.pool_id is not None:
            pool_steps.build_pool_data(self)
        if s.data == "synthetic":
            from nnunet_anatomask.example_data import make_example_dataset
            make_example_dataset(self.layout.raw, s.dataset_id, s.dataset_name, num_train=s.num_train,
                                 num_test=s.num_test, shape=(12, 32, 32), spacing=(1.0, 1.0, 1.0))
        else:
            from nnunet_anatomask.evaluation.anatomy_dataset import build_anatomy_dataset
            build_anatomy_dataset(self.layout.raw, s.dataset_id, s.dataset_name, s.num_train, s.num_test,
                                  s.spacing, log=lambda m: self.log("  " + m), channel_name=s.channel_name)

    def train_cases(self) -> list[str]:
        ending = ".nii.gz"
        folder = os.path.join(self.layout.raw_dataset, "labelsTr")
        return sorted(f[: -len(ending)] for f in os.listdir(folder) if f.endswith(ending))

    def labels(self) -> dict:
        with open(os.path.join(self.layout.raw_dataset, "dataset.json")) as f:
            return {int(v): k for k, v in json.load(f)["labels"].items() if int(v) != 0}

    # --- 2. plan --------------------------------------------------------------------------------------------
    def plan_done(self) -> bool:
        if self.size.pool_id is not None:
            return pool_steps.plan_done(self)
        base = self.layout.plans_file("nnUNetPlans")
        if not (os.path.isfile(base) and os.path.isfile(self.layout.plans_file())):
            return False
        with open(base) as f:
            ident = json.load(f)["configurations"][self.size.configuration]["data_identifier"]
        data = os.path.join(self.layout.pre_dataset, ident)
        return os.path.isdir(data) and all(os.path.isfile(os.path.join(data, c + ".pkl"))
                                           for c in self.train_cases())

    def plan(self) -> float:
        s = self.size
        if s.pool_id is not None:
            return pool_steps.plan(self)
        cpu = self.nnunet("plan_and_preprocess", ["nnUNetv2_plan_and_preprocess", "-d", s.dataset_id, "-c",
                                            s.configuration, "-np", 1 if self.device == "cpu" else 4],
                    training=False)
        if s.plans_name != "nnUNetPlans":
            write_capped_plans(self.layout.plans_file("nnUNetPlans"), self.layout.plans_file(), s.configuration,
                               s.plans_name, s.max_features, s.max_batch_size)
        return cpu

    # --- 3. folds -------------------------------------------------------------------------------------------
    def write_folds(self, table: list[Stage2Run]) -> None:
        """folds.json and splits_final.json: fold k trains on the labelled cases of its run's fraction."""
        fractions = sorted({r.fraction for r in table})
        nested = make_splits(self.train_cases(), self.size.num_val, self.counts(fractions))
        by_fraction = dict(zip(fractions, nested))
        write_splits(os.path.join(self.layout.pre_dataset, "splits_final.json"),
                     [by_fraction[r.fraction] for r in table])
        save_folds(self.folds_file, table)

    # --- 4. stage 1 -----------------------------------------------------------------------------------------
    def pretrain(self, arm: str) -> float:
        resume = os.path.isfile(self.layout.stage1_latest(arm))
        return self.launch(f"pretrain_{arm}", "pretrain", "all", arm, STAGE1_SEED, resume)

    # --- 5. stage 2, curve, prediction ----------------------------------------------------------------------
    def train(self, trainer: str, r: Stage2Run) -> float:
        stage1 = self.layout.stage1_checkpoint(trainer)
        if trainer != SCRATCH and not os.path.isfile(stage1):
            raise EvaluationError(f"no stage-1 checkpoint {stage1}. Fix: rerun without --stop-after (stage 1 runs "
                                  f"first).")
        latest = os.path.join(self.layout.fold_dir(trainer, r.fold), "checkpoint_latest.pth")
        return self.launch(f"train_{trainer}_fold{r.fold}", "train", r.fold, trainer, r.seed,
                           os.path.isfile(latest), r.initial_lr)

    def predict(self, trainer: str, fold: int) -> float:
        s = self.size
        pool = ["--pool", s.pool_dataset] if s.pool_dataset else []
        return self.nnunet(f"predict_{trainer}_fold{fold}", [
            sys.executable, "-m", "nnunet_anatomask.evaluation.prediction", self.out, s.dataset, s.plans_name,
            s.configuration, trainer, fold, self.device, *self.threads, *pool], training=False)

    def curve_file(self, trainer: str, fold: int) -> str:
        return os.path.join(self.out, "curves", trainer, f"fold_{fold}.json")

    def stage2(self, trainer: str, r: Stage2Run, count: int, stage1: Optional[Future] = None) -> None:
        """Train, keep the curve, predict and evaluate; a scheme waits for its stage 1 first."""
        if stage1 is not None:
            stage1.result()
        lay = self.layout
        lr = f", start lr {r.initial_lr:g}" if r.initial_lr is not None else ""
        name = f"{trainer} fold {r.fold} ({r.fraction:g}: {count} labelled, seed {r.seed}{lr})"
        self.step(f"stage2 {name}", os.path.isfile(lay.final_checkpoint(trainer, r.fold)), self.train, trainer, r,
                  work=stage2_seconds(self.size))
        if not os.path.isfile(self.curve_file(trainer, r.fold)):
            curves.save_curve(lay.final_checkpoint(trainer, r.fold), self.curve_file(trainer, r.fold),
                              self.size.iters_per_epoch)
        self.step(f"predict {name}", os.path.isfile(lay.summary(trainer, r.fold)), self.predict, trainer, r.fold,
                  work=self.size.cost.predict_s)

    # --- orchestration --------------------------------------------------------------------------------------
    def execute(self, stop_after: Optional[str] = None) -> Optional[str]:
        """Every step not yet done; returns None, or the folder of the step named by ``stop_after``."""
        lay = self.layout
        table, wanted = self.fold_table()  # checks the fractions before any work
        # data, plan, stage 1 per scheme arm, then per run and arm: stage 2 and its prediction
        pairs = [(r, tr) for r in wanted for tr in self.trainers_for(r)]
        plan_s = self.size.cost.data_and_plan_s / 2
        stage1_s = {arm: self.stage1_seconds(arm) for arm in self.scheme_arms()}
        work = 2 * plan_s + sum(stage1_s.values()) + len(pairs) * (stage2_seconds(self.size) + self.size.cost.predict_s)
        self.progress = Progress(2 + len(stage1_s) + 2 * len(pairs), "evaluation", work=work)
        self.step("data", self.data_done(), self.build_data, work=plan_s)
        if stop_after == "data":
            return lay.raw_dataset
        self.step("plan_and_preprocess", self.plan_done(), self.plan, work=plan_s)
        self.write_folds(table)
        if stop_after == "plan":
            return lay.pre_dataset
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            stage1 = {tr: pool.submit(self.step, f"stage1 {tr}", os.path.isfile(lay.stage1_checkpoint(tr)),
                                      self.pretrain, tr, work=stage1_s[tr]) for tr in self.scheme_arms()}
            if stop_after == "stage1":
                finish(pool, list(stage1.values()))
                return os.path.join(lay.results, lay.dataset)
            counts = dict(zip(self.fractions, self.counts()))
            finish(pool, [*stage1.values(), *(pool.submit(self.stage2, tr, r, counts[r.fraction],
                                                          stage1.get(self.stage1_arm(tr))) for r, tr in pairs)])
        return None


def finish(pool: ThreadPoolExecutor, futures: list) -> None:
    """Wait for every step; at the first failure start no new one, let the running ones end, and raise it."""
    wait(futures, return_when=FIRST_EXCEPTION)
    failed = [f for f in futures if f.done() and f.exception() is not None]
    if failed:
        pool.shutdown(wait=True, cancel_futures=True)
        raise failed[0].exception()
