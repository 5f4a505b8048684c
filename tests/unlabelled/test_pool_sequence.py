"""The documented pool -> target sequence (docs/usage.md) through the real console scripts, on generated data: an
image-only pool, a small labelled target; and the same target planned with its own, different plans, refused
before any training with the fix (slow: ~6 CLI calls)."""
import os

import pytest

from nnunet_anatomask.example_data import make_example_dataset
from tests.conftest import TINY_RUN, clean_env, run_cli
from tests.trainers.helpers import fold_folder, load_weights_only, stage2_log_text

pytestmark = pytest.mark.slow
POOL, TARGET, OTHER = 601, 602, 603


def test_pretrain_on_the_pool_then_finetune_the_target(tmp_path):
    raw, results = str(tmp_path / "raw"), str(tmp_path / "results")
    env = clean_env(nnUNet_raw=raw, nnUNet_preprocessed=str(tmp_path / "preprocessed"), nnUNet_results=results)
    train_env = {**env, "nnUNet_n_proc_DA": "0", **TINY_RUN}
    make_example_dataset(raw, POOL, "Pool", num_train=6, num_test=0, images_only=True, seed=0)
    make_example_dataset(raw, TARGET, "Target", num_train=5, num_test=0, seed=1)
    make_example_dataset(raw, OTHER, "Other", num_train=5, num_test=0, seed=2, spacing=(2.0, 1.0, 1.0))

    run_cli(["nnUNetv2_plan_and_preprocess_unlabelled", "-d", POOL, "-c", "3d_fullres", "-np", 1, "-npfp", 1], env)
    run_cli(["nnUNetv2_pretrain", POOL, "3d_fullres", "all", "-tr", "nnUNetTrainerAnatoMask", "-device", "cpu"],
            train_env)
    stage1 = os.path.join(fold_folder(results, "Dataset601_Pool", "nnUNetTrainerAnatoMask", "3d_fullres", "all"),
                          "pretraining", "checkpoint_final.pth")
    assert load_weights_only(stage1)["current_epoch"] == 1

    # the target, planned once as any nnU-Net dataset (--no_pp: its own preprocessing would be replaced anyway)
    run_cli(["nnUNetv2_plan_and_preprocess", "-d", TARGET, "-c", "3d_fullres", "--no_pp", "-npfp", 1], env)
    run_cli(["nnUNetv2_move_plans_between_datasets", "-s", POOL, "-t", TARGET, "-sp", "nnUNetPlans", "-tp",
             "nnUNetPlans"], env)
    run_cli(["nnUNetv2_preprocess", "-d", TARGET, "-c", "3d_fullres", "-np", 1], env)
    run_cli(["nnUNetv2_train", TARGET, "3d_fullres", 0, "-tr", "nnUNetTrainerFinetune", "-device", "cpu",
             "-pretrained_weights", stage1], train_env)
    fold0 = fold_folder(results, "Dataset602_Target", "nnUNetTrainerFinetune", "3d_fullres", 0)
    assert os.path.isfile(os.path.join(fold0, "checkpoint_final.pth"))
    assert "Mean Validation Dice" in stage2_log_text(fold0)

    # another target planned with its own plans (2 mm slices): refused before training, naming spacing and the fix
    run_cli(["nnUNetv2_plan_and_preprocess", "-d", OTHER, "-c", "3d_fullres", "-np", 1, "-npfp", 1], env)
    proc = run_cli(["nnUNetv2_train", OTHER, "3d_fullres", 0, "-tr", "nnUNetTrainerFinetune", "-device", "cpu",
                    "-pretrained_weights", stage1], train_env, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "is planned differently" in output and "spacing: [1.0, 1.0, 1.0] vs" in output
    assert "nnUNetv2_move_plans_between_datasets -s Dataset601_Pool -t Dataset603_Other" in output
    assert not os.path.isfile(os.path.join(fold_folder(results, "Dataset603_Other", "nnUNetTrainerFinetune",
                                                       "3d_fullres", 0), "checkpoint_latest.pth"))
