"""Slow: `python -m nnunet_anatomask.evaluate --size tiny-pool --stage1-factors 1 2 --fraction-seeds 0.5=0,1,2`
end to end through the user-facing pool commands (two generated pool sources planned as one pool with --as,
stage 1 on the pool at two lengths, the pool's plans moved to the labelled dataset, nnUNetTrainerFinetune from
each pool checkpoint), then a rerun that skips every step. ~10 min on a 2-core CPU; the pieces are default-suite
tests (test_layout, test_folds, test_cli, test_statistics, tests/unlabelled/test_multi_source_pool.py)."""
import json
import subprocess
import sys

import pytest

from tests.conftest import clean_env

pytestmark = pytest.mark.slow
ARGS = ["--schemes", "RandomMask", "--stage1-factors", "1", "2", "--fraction-seeds", "0.5=0,1,2"]


def run(out, timeout):
    proc = subprocess.run([sys.executable, "-m", "nnunet_anatomask.evaluate", "--size", "tiny-pool", "--output",
                           str(out), "--device", "cpu", *ARGS], env=clean_env(), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"evaluate exited {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc.stdout


def test_pool_path_with_stage1_factors_and_more_seeds(tmp_path):
    stdout = run(tmp_path, 3600)
    for command in ("nnUNetv2_plan_and_preprocess_unlabelled -d 976 977 --as 975", "nnUNetv2_move_plans_between_"
                    "datasets -s 975 -t 978", "-tr nnUNetTrainerFinetune", "--pretrained-weights"):
        assert command in stdout, command
    text = (tmp_path / "report" / "results.md").read_text()
    for row in ("| Scratch |", "| RandomMask |", "| RandomMask_x2 |"):
        line = next(x for x in text.splitlines() if x.startswith(row))
        assert "3 runs" in line, line
    assert "smallest detectable" in text and "the unlabelled pool `Dataset975_BrainPool`" in text
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert all(r["detectable"] > 0 for r in results["table"] if "diff" in r)
    pool = tmp_path / "nnUNet_results" / "Dataset975_BrainPool"
    assert (pool / "nnUNetTrainerRandomMask__nnUNetPlansCappedF16B4__2d" / "fold_all" / "pretraining" /
            "checkpoint_final.pth").is_file()
    longer = tmp_path / "stage1_x2" / "nnUNet_results" / "Dataset975_BrainPool" / \
        "nnUNetTrainerRandomMask__nnUNetPlansCappedF16B4__2d" / "fold_all" / "pretraining" / "summary.json"
    assert json.loads(longer.read_text())["epochs"] == 2  # twice the size's 1 epoch
    finetuned = tmp_path / "finetune_nnUNetTrainerRandomMask_x2" / "nnUNet_results" / "Dataset978_EvalTinyPool" / \
        "nnUNetTrainerFinetune__nnUNetPlansCappedF16B4__2d" / "fold_2" / "checkpoint_final.pth"
    assert finetuned.is_file()
    again = run(tmp_path, 600)
    assert "[run ]" not in again
