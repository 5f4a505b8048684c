"""Stage-1 checkpoints written before the scheme interface owned the step still resume and hand over: their keys
are unchanged. tests/data/old_stage1_*.pth were written by the code of commit 715b38c: Stage1Runner on
benchmark.synthetic_plans("tiny") narrowed to 3 stages of widths 2-4-8 and a 16³ patch (old_stage1_plans.json),
two train_steps (AdamW moments and AnatoMask's teacher populated), current_epoch 2."""
import json
import os

import pytest
import torch

from nnunet_anatomask import benchmark
from nnunet_anatomask.trainers.registry import SCHEME_TRAINERS

DATA = os.path.join(os.path.dirname(__file__), "..", "data")


@pytest.fixture
def old_plans():
    with open(os.path.join(DATA, "old_stage1_plans.json")) as f:
        saved = json.load(f)
    with benchmark.scratch_env(saved["plans"]["configurations"]["3d_fullres"]):
        yield saved["plans"], saved["dataset_json"]


@pytest.mark.parametrize("name", ["RandomMask", "AnatoMask"])
def test_old_checkpoint_resumes_and_hands_over(name, old_plans):
    plans, dataset_json = old_plans
    path = os.path.join(DATA, f"old_stage1_{name}.pth")
    trainer = SCHEME_TRAINERS[f"nnUNetTrainer{name}"](
        plans={**plans, "continue_training": True}, configuration="3d_fullres", fold=0, dataset_json=dataset_json,
        device=torch.device("cpu"))
    runner = trainer.stage1
    runner.build()
    runner.load(path)  # compatibility fields, network, mask tokens, scheme state, optimiser, log, RNG
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert runner.current_epoch == saved["current_epoch"] == 2
    assert runner.scheme.state_dict().keys() == saved["scheme_state"]["scheme"].keys()
    out = runner.loop.train_step({"data": torch.randn(2, 1, 16, 16, 16)}, 1)
    assert torch.isfinite(out.figures["loss"])
    trainer.initialize()
    trainer.load_stage1_weights(path)
    state = trainer.network.state_dict()
    for key, tensor in saved["network_weights"].items():
        if ".seg_layers." not in key:
            assert torch.equal(state[key], tensor), key


def test_a_checkpoint_with_other_scheme_settings_is_not_reused(old_plans, monkeypatch, tmp_path):
    """The settings saved in a stage-1 checkpoint must equal this run's (setting by setting; the old checkpoints
    above have none and load). Catches: a checkpoint made with another mask ratio resumed or handed over."""
    from nnunet_anatomask.checkpoint_io import CheckpointError

    plans, dataset_json = old_plans
    saved = torch.load(os.path.join(DATA, "old_stage1_RandomMask.pth"), map_location="cpu", weights_only=True)
    torch.save({**saved, "scheme_settings": {"mask_ratio": 0.75, "a_setting_added_later": 1}}, tmp_path / "c.pth")
    trainer = SCHEME_TRAINERS["nnUNetTrainerRandomMask"](
        plans={**plans, "continue_training": True}, configuration="3d_fullres", fold=0, dataset_json=dataset_json,
        device=torch.device("cpu"))
    runner = trainer.stage1
    runner.build()
    with pytest.raises(CheckpointError, match=r"other RandomMask settings than this run's: mask_ratio 0.75 "
                                              r"\(checkpoint\) vs 0.6 \(this run\). Fix: use the same "
                                              r"nnUNet_anatomask_scheme_config"):
        runner.load(str(tmp_path / "c.pth"))
    monkeypatch.setenv("nnUNet_anatomask_scheme_config", '{"mask_ratio": 0.75}')
    same = SCHEME_TRAINERS["nnUNetTrainerRandomMask"](
        plans={**plans, "continue_training": True}, configuration="3d_fullres", fold=0, dataset_json=dataset_json,
        device=torch.device("cpu")).stage1
    same.build()
    same.load(str(tmp_path / "c.pth"))  # the same settings: resumes
    assert same.current_epoch == 2
