"""The log line of a reused stage-1 checkpoint shows its budget beside this run's (trainers/stage1_budget.py); the
real run is test_end_to_end.py's fold 0 reusing fold_all."""
import json

from nnunet_anatomask.trainers.stage1_budget import checkpoint_budget, reuse_line


def test_same_budget_is_one_plain_line():
    ckpt = {"scheme": "RandomMask", "current_epoch": 5, "budget": {"epochs": 5, "iterations_per_epoch": 250}}
    assert reuse_line("/r/fold_all/pretraining/checkpoint_final.pth", ckpt, (5, 250)) == (
        "Using the stage-1 checkpoint /r/fold_all/pretraining/checkpoint_final.pth (RandomMask, 5 epochs x 250 "
        "iterations; this run's stage-1 budget: 5 epochs x 250 iterations)")


def test_another_budget_says_so_and_how_to_pretrain_again():
    ckpt = {"scheme": "AnatoMask", "current_epoch": 2, "budget": {"epochs": 2, "iterations_per_epoch": 250}}
    line = reuse_line("/r/fold_all/pretraining/checkpoint_final.pth", ckpt, (5, 250))
    assert "(AnatoMask, 2 epochs x 250 iterations; this run's stage-1 budget: 5 epochs x 250 iterations). The " \
           "budgets differ; the checkpoint is used as it is. To pretrain with this run's budget instead, move " \
           "/r/fold_all/pretraining away" in line


def test_a_checkpoint_without_its_budget_falls_back_to_its_epochs_and_summary(tmp_path):
    path = tmp_path / "checkpoint_final.pth"
    assert checkpoint_budget({"current_epoch": 3}, str(path)) == (3, None)
    (tmp_path / "summary.json").write_text(json.dumps({"epochs": 3, "iterations_per_epoch": 40}))
    assert checkpoint_budget({"current_epoch": 3}, str(path)) == (3, 40)
    assert "3 epochs x 40 iterations" in reuse_line(str(path), {"scheme": "AMLP", "current_epoch": 3}, (3, 40))
