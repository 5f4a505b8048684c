"""Smoke test: `python -m nnunet_anatomask.evaluate --size tiny` end to end through the real nnU-Net code (plan,
stage 1 per scheme, stage 2 per fraction and seed for every scheme and for Scratch, predict, evaluate, report),
then a rerun that skips every finished step. It checks the report (every scheme run, the seeds, finite intervals,
the learning curves), not which scheme wins (1 and 4 epochs x 2 iterations).

The default suite runs RandomMask against Scratch: every further scheme adds 1 + fractions x seeds real CLI calls
(about 20 s each, most of it nnU-Net's import and trainer lookup), which the CI budget cannot take for five schemes.
The slow test at the end runs every registered scheme."""
import csv
import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch

from nnunet_anatomask.evaluation.protocol import SIZES
from nnunet_anatomask.evaluation.trainer_names import SCRATCH, short_name
from nnunet_anatomask.evaluation.trainer_names import scheme_trainers as all_scheme_trainers
from tests.conftest import clean_env

TINY = SIZES["tiny"]
SCHEMES = ["RandomMask"]  # the default suite's run (see the docstring)


def scheme_trainers(schemes=SCHEMES) -> list[str]:
    return all_scheme_trainers(schemes)


def evaluate(out, timeout=2400, *extra):
    proc = subprocess.run([sys.executable, "-m", "nnunet_anatomask.evaluate", "--size", "tiny", "--output", str(out),
                           "--device", "cpu", *extra], env=clean_env(), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"evaluate exited {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc.stdout


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate_tiny")
    return out, evaluate(out, 2400, "--schemes", *SCHEMES)


def test_report_has_every_scheme_the_seeds_and_finite_intervals(tiny):
    out, stdout = tiny
    assert "estimated wall time" in stdout.splitlines()[2]  # printed before any step
    n_runs = len(TINY.fractions) * len(TINY.seeds)
    steps = 2 + len(scheme_trainers()) + 2 * n_runs * (1 + len(scheme_trainers()))  # data, plan, stage 1 per scheme,
    # then stage 2 and its prediction per run for every trainer (Scratch too)
    assert f"[evaluation 1/{steps}] data - elapsed" in stdout and f"[evaluation {steps}/{steps}] done in" in stdout
    assert re.search(rf"\[evaluation \d+/{steps}\] .* about \d+(m\d+)?s left", stdout)  # estimate after step 1
    assert "about -" not in stdout  # never a negative time left
    text = (out / "report" / "results.md").read_text()
    runs = f"{len(TINY.seeds)} runs"
    assert f"seeds {', '.join(map(str, TINY.seeds))}" in text
    for tr in [SCRATCH, *scheme_trainers()]:
        row = next(line for line in text.splitlines() if line.startswith(f"| {short_name(tr)} |"))
        cells = row.strip("|").split("|")[1:]
        assert len(cells) == len(TINY.fractions) and all(runs in c for c in cells), row
        numbers = [float(x) for x in re.findall(r"[-+]?\d+\.\d+", row)]
        assert len(numbers) == (1 if tr == SCRATCH else 4) * len(TINY.fractions), row
        assert all(math.isfinite(x) for x in numbers), row
        for k in range(len(TINY.fractions) if tr != SCRATCH else 0):
            _, diff, lo, hi = numbers[4 * k: 4 * k + 4]
            assert lo <= diff <= hi
    results = json.loads((out / "report" / "results.json").read_text())
    schemes = [r for r in results["table"] if r["trainer"] != SCRATCH]
    assert len(schemes) == len(scheme_trainers()) * len(TINY.fractions)
    assert all(r["runs"] == len(TINY.seeds) and r["seed_low"] is not None and r["case_low"] is not None
               for r in schemes)


def test_learning_curves_and_figures(tiny):
    out, _ = tiny
    report = out / "report"
    text = (report / "results.md").read_text()
    assert "![learning curves](learning_curves.png)" in text
    for name in ("learning_curves.png", "dice_vs_fraction.png",
                 *(f"stage1_{short_name(t)}.png" for t in scheme_trainers())):
        assert (report / name).stat().st_size > 1000, name
    plateaus = json.loads((report / "results.json").read_text())["plateaus"]
    assert len(plateaus) == (1 + len(scheme_trainers())) * len(TINY.fractions)
    with open(report / "per_case_dice.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["seed"] for r in rows} == {str(s) for s in TINY.seeds}
    assert all(math.isfinite(float(r["dice"])) for r in rows)


def test_runs_are_folds_on_identical_splits_and_seeded(tiny):
    """Every (fraction, seed) is one fold; the folds of a fraction hold the same cases; the same seed trains the
    same network twice (a rerun of Scratch's first fold in another results folder), another seed does not."""
    out, _ = tiny
    folds = json.loads((out / "folds.json").read_text())
    splits = json.loads((out / "nnUNet_preprocessed" / "Dataset980_EvalTiny" / "splits_final.json").read_text())
    assert len(folds) == len(splits) == len(TINY.fractions) * len(TINY.seeds)
    for a in folds:
        for b in folds:
            assert (splits[a["fold"]] == splits[b["fold"]]) == (a["fraction"] == b["fraction"])
    test_cases = {f[:-7] for f in os.listdir(out / "nnUNet_raw" / "Dataset980_EvalTiny" / "labelsTs")}
    assert not test_cases & {c for s in splits for c in s["train"] + s["val"]}
    model = out / "nnUNet_results" / "Dataset980_EvalTiny" / f"{SCRATCH}__{TINY.plans_name}__2d"
    first = next(f for f in folds if f["seed"] == TINY.seeds[0])
    other = next(f for f in folds if f["seed"] == TINY.seeds[1] and f["fraction"] == first["fraction"])
    again = out / "again"
    env = clean_env(nnUNet_raw=str(out / "nnUNet_raw"), nnUNet_preprocessed=str(out / "nnUNet_preprocessed"),
                    nnUNet_results=str(again), nnUNet_n_proc_DA="0",
                    nnUNet_anatomask_finetune_epochs=str(TINY.finetune_epochs), nnUNet_anatomask_iters_per_epoch="2",
                    nnUNet_anatomask_save_every="1")
    subprocess.run([sys.executable, "-m", "nnunet_anatomask.evaluation.launch", "train", "980", "2d",
                    str(first["fold"]), "-tr", SCRATCH, "-p", TINY.plans_name, "-device", "cpu", "--seed",
                    str(first["seed"]), "--threads", "1"], env=env, check=True, capture_output=True, timeout=600)
    weights = lambda folder: torch.load(folder / "checkpoint_final.pth", weights_only=False)["network_weights"]  # noqa
    rerun = weights(again / "Dataset980_EvalTiny" / model.name / f"fold_{first['fold']}")
    same, seed_b = weights(model / f"fold_{first['fold']}"), weights(model / f"fold_{other['fold']}")
    assert all(torch.equal(rerun[k], same[k]) for k in same)
    assert not all(torch.equal(seed_b[k], same[k]) for k in same)


def test_each_scheme_pretrained_once_and_kept_apart(tiny):
    out, _ = tiny
    base = out / "nnUNet_results" / "Dataset980_EvalTiny"
    for tr in scheme_trainers():
        folder = base / f"{tr}__{TINY.plans_name}__2d"
        assert (folder / "fold_all" / "pretraining" / "checkpoint_final.pth").is_file()
        for fold in range(len(TINY.fractions) * len(TINY.seeds)):
            log = "".join(p.read_text() for p in (folder / f"fold_{fold}").glob("training_log_*.txt"))
            assert "Using the stage-1 checkpoint" in log and "fold_all" in log
    assert not (base / f"{SCRATCH}__{TINY.plans_name}__2d" / "fold_all").exists()


def test_recipe_axis_and_scratch_at_other_lrs_on_an_existing_run(tiny):
    """The finished tiny run, rerun with a recipe and Scratch at another start lr (seed 0 only: 4 more CLI calls):
    the existing folds keep their numbers and nothing finished runs again; the recipe trainer finds its scheme's
    stage 1; Scratch's new fold trains from that start lr (`launch --initial-lr`; nnU-Net logs every epoch's lr,
    the first is the start lr) and the default folds from nnU-Net's; the report has the recipe's row and the
    comparison with Scratch at its best start lr."""
    out, _ = tiny
    before = json.loads((out / "folds.json").read_text())
    stdout = evaluate(out, 1200, "--schemes", *SCHEMES, "--recipes", "full", "frozenEnc", "--scratch-lrs", "1e-3",
                      "--seeds", "0")
    folds = json.loads((out / "folds.json").read_text())
    assert folds[:len(before)] == before and folds[len(before):] == [
        {"fold": len(before), "fraction": TINY.fractions[0], "seed": 0, "initial_lr": 1e-3}]
    recipe = scheme_trainers()[0] + "_frozenEnc"
    ran = [line for line in stdout.splitlines() if line.startswith("[run ]")]
    assert len(ran) == 4 and all(recipe in line or f"{short_name(SCRATCH)} fold" in line or SCRATCH in line
                                 for line in ran), ran
    base = out / "nnUNet_results" / "Dataset980_EvalTiny"
    lrs = lambda fold: torch.load(base / f"{SCRATCH}__{TINY.plans_name}__2d" / f"fold_{fold}" /  # noqa: E731
                                  "checkpoint_final.pth", weights_only=False)["logging"]["lrs"]
    assert lrs(len(before))[0] == pytest.approx(1e-3) and lrs(0)[0] == pytest.approx(1e-2)  # 1e-2: nnU-Net's
    log = "".join(p.read_text() for p in (base / f"{recipe}__{TINY.plans_name}__2d" / "fold_0").glob("training_log_*"))
    assert f"{scheme_trainers()[0]}__{TINY.plans_name}__2d/fold_all/pretraining/checkpoint_final.pth" in log
    assert "Recipe frozenEnc, phase warmup_decoder" in log and "loading encoder" in log
    text = (out / "report" / "results.md").read_text()
    assert any(line.startswith(f"| {short_name(recipe)} |") for line in text.splitlines())
    assert "## Against Scratch at its own best start lr" in text and "Scratch also at 0.001" in text


def test_rerun_skips_finished_steps(tiny):
    out, _ = tiny
    stdout = evaluate(out, 300, "--schemes", *SCHEMES)
    runs = len(TINY.fractions) * len(TINY.seeds) * (1 + len(scheme_trainers()))
    assert "[run ]" not in stdout and stdout.count("[skip]") == 2 + len(scheme_trainers()) + 2 * runs


@pytest.mark.slow
def test_every_registered_scheme(tmp_path):
    """Every registered scheme gets its stage 1, its stage-2 runs and its row (registration alone)."""
    stdout = evaluate(tmp_path)
    text = (tmp_path / "report" / "results.md").read_text()
    for tr in all_scheme_trainers():
        assert any(line.startswith(f"| {short_name(tr)} |") for line in text.splitlines()), tr
        assert (tmp_path / "report" / f"stage1_{short_name(tr)}.png").is_file(), tr
    runs = len(TINY.fractions) * len(TINY.seeds)
    assert f"[evaluation {2 + len(all_scheme_trainers()) + 2 * runs * (1 + len(all_scheme_trainers()))}/" in stdout
