"""Our stage-1 checkpoints in nnU-Net's main branch (slow; skipped unless NNUNET_MAIN_SRC names a source tree of
MIC-DKFZ/nnUNet main, e.g. `git archive` of its newest commit).

The tree is installed into a throwaway venv (tmp) that sees this venv's packages through a .pth line (torch and
the other dependencies come from local disk; nothing is downloaded), without our trainers' registration. A trainer
file with a 1 epoch x 2 iteration budget is added to the installed nnunetv2 (nnU-Net looks trainers up in its own
folder only): PretrainedTrainer's / PretrainedTrainer_Primusx's loading and fine-tuning, our budget. Then, for a
PlainConvUNet, a ResidualEncoderUNet and a Primus-S checkpoint written by nnUNetv2_pretrain: nnU-Net main's
nnUNetv2_preprocess_like_nnssl -am like_pretrained and nnUNetv2_train_pretrained. A refusal by nnU-Net main is a
finding about the format, reported as the failure's message.
"""
import os
import site
import subprocess
import sys

import pytest
import torch

from tests.conftest import run_cli
from tests.interop.test_nnssl_in import copy_planned
from tests.trainers.helpers import fold_folder, relative_distances

pytestmark = pytest.mark.slow
SOURCE = os.environ.get("NNUNET_MAIN_SRC")
BUDGET_TRAINERS = '''
from nnunetv2.training.nnUNetTrainer.pretraining.pretrainedTrainer import PretrainedTrainer
from nnunetv2.training.nnUNetTrainer.pretraining.thrp_primusx_finetuning import PretrainedTrainer_Primusx


class PretrainedTrainer_2it(PretrainedTrainer):
    def __init__(self, plans, configuration, fold, dataset_json, device):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 1, 2, 1
        self.warmup_duration_whole_net = 1


class PretrainedTrainer_Primusx_2it(PretrainedTrainer_Primusx):
    def __init__(self, plans, configuration, fold, dataset_json, device):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 1, 2, 1
        self.warmup_duration_whole_net = 1
'''


@pytest.fixture(scope="module")
def main_venv(tmp_path_factory) -> str:
    """bin/ of a throwaway venv with nnU-Net main installed."""
    if not SOURCE or not os.path.isfile(os.path.join(SOURCE, "pyproject.toml")):
        pytest.skip("set NNUNET_MAIN_SRC to a source tree of MIC-DKFZ/nnUNet main to run this test")
    venv = tmp_path_factory.mktemp("nnunet_main") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # based on this venv's base interpreter
    packages = subprocess.run([str(venv / "bin" / "python"), "-c", "import site; print(site.getsitepackages()[0])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    with open(os.path.join(packages, "_this_project_packages.pth"), "w") as f:
        f.write(site.getsitepackages()[0] + "\n")  # ours: torch and friends, not our .pth registration hook
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", SOURCE], check=True)
    trainers = os.path.join(packages, "nnunetv2", "training", "nnUNetTrainer", "pretraining", "budget_2it.py")
    with open(trainers, "w") as f:
        f.write(BUDGET_TRAINERS)
    return str(venv / "bin")


def run_main(bin_dir: str, args: list, env: dict) -> subprocess.CompletedProcess:
    """One of nnU-Net main's console scripts; fails the test with its output (nnU-Net main's refusal)."""
    proc = subprocess.run([os.path.join(bin_dir, args[0]), *map(str, args[1:])], env=env, capture_output=True,
                          text=True, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"nnU-Net main refused: {' '.join(map(str, args))} exited {proc.returncode}\n"
                    f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.mark.parametrize("fixture, trainer, main_trainer", [
    ("demo3d", "nnUNetTrainerRandomMask", "PretrainedTrainer_2it"),
    ("resenc", "nnUNetTrainerAnatoMask", "PretrainedTrainer_2it"),
    ("demo3d", "nnUNetTrainerRandomMask_PrimusS", "PretrainedTrainer_Primusx_2it")])
def test_nnunet_main_fine_tunes_our_checkpoint(main_venv, request, tmp_path, fixture, trainer, main_trainer):
    """nnUNetv2_preprocess_like_nnssl reads our checkpoint's plan, nnUNetv2_train_pretrained loads our encoder (its
    log names our checkpoint) and fine-tunes it: after 2 steps at lr <= 1e-3 its encoder is within 0.25 (relative,
    every weight of 3 or more dimensions) of ours."""
    planned = copy_planned(request.getfixturevalue(fixture), tmp_path / "data")
    plans = "nnUNetPlans" if fixture == "demo3d" else "nnUNetResEncUNetMPlans"
    results = tmp_path / "results"
    run_cli(["nnUNetv2_pretrain", planned.dataset_id, "3d_fullres", "all", "-tr", trainer, "-p", plans, "-device",
             "cpu"], planned.train_env(results, nnUNet_anatomask_iters_per_epoch="1"))
    ours = os.path.join(fold_folder(results, planned.dataset_name, trainer, "3d_fullres", "all", plans),
                        "pretraining", "checkpoint_final.pth")
    env = planned.env(str(tmp_path / "main_results"), nnUNet_n_proc_DA="0", nnUNet_compile="false")
    run_main(main_venv, ["nnUNetv2_preprocess_like_nnssl", "-d", planned.dataset_id, "-n", "ours", "-pc", ours,
                         "-am", "like_pretrained", "-np", 1], env)
    pt_plans = next(p[:-5] for p in os.listdir(os.path.join(planned.preprocessed, planned.dataset_name))
                    if p.startswith("ptPlans__ours") and p.endswith(".json"))
    proc = run_main(main_venv, ["nnUNetv2_train_pretrained", planned.dataset_id, "3d_fullres", 0, "-p", pt_plans,
                                "-tr", main_trainer, "-device", "cpu"], env)
    assert f"Loaded Network from {ours}" in proc.stdout
    final = os.path.join(fold_folder(tmp_path / "main_results", planned.dataset_name, main_trainer, "3d_fullres", 0,
                                     pt_plans), "checkpoint_final.pth")
    tuned = torch.load(final, weights_only=False, map_location="cpu")["network_weights"]
    weights = torch.load(ours, weights_only=True)["network_weights"]
    encoder = {k: v for k, v in weights.items() if k.startswith(("encoder.", "eva.blocks", "down_projection."))}
    distances = relative_distances({k: tuned[k] for k in encoder}, encoder)
    assert distances and max(distances.values()) < 0.25, sorted(distances.items(), key=lambda kv: -kv[1])[:3]
