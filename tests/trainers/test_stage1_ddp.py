"""Stage 1 under DDP on the CPU: two gloo processes with real trainer objects (docs/pools_and_ddp.md).

Batches and masks are fixed (tests/trainers/ddp_helpers.py), so that two ranks with a batch of 1 each and one
process with their concatenated batch of 2 compute the same global step. Slow (~3 process start-ups of two
processes each): tests/pretraining/test_distributed.py checks the same on a tiny model in the default suite.
"""
import os

import pytest
import torch

from tests.conftest import BIN, run_cli
from tests.trainers import ddp_helpers as h
from tests.trainers.helpers import fold_folder, load_weights_only, stage1_log_text
from tests.trainers.cli_runs import kill_after_epoch

pytestmark = pytest.mark.slow
SCHEMES = ["AnatoMask", "HeadAndBuffers"]  # an EMA teacher; a trained head, a float and an integer buffer
# Tolerance of two ranks vs one process: ddp_helpers.RELATIVE_TOLERANCE (why: there).


@pytest.fixture(scope="module")
def planned(demo3d) -> dict:
    return {"raw": demo3d.raw, "preprocessed": demo3d.preprocessed, "plans": demo3d.plans(),
            "dataset_json": demo3d.dataset_json()}


@pytest.fixture(scope="module")
def runs(planned, tmp_path_factory) -> str:
    """Two ranks from scratch (AdamW and SGD, each with a checkpoint after RESUME_AT steps) and their draws; two
    ranks resumed from the AdamW checkpoint; one process from the SGD initial state and from the SGD checkpoint."""
    out = str(tmp_path_factory.mktemp("ddp"))
    h.spawn(2, out, h.two_ranks, planned, SCHEMES, out)
    h.spawn(2, out, h.run_from, planned, SCHEMES, out, [("adamw", "mid")])
    h.spawn(1, out, h.run_from, planned, SCHEMES, out, [("sgd", "initial"), ("sgd", "mid")])
    return out


def load(out: str, scheme: str, tag: str, rank: int = 0) -> dict:
    return torch.load(os.path.join(out, scheme, f"{tag}_rank{rank}.pt"), weights_only=False)


def weight_change(out: str, scheme: str, result: dict) -> float:
    initial = torch.load(os.path.join(out, scheme, "sgd_initial.pth"), weights_only=False)["network_weights"]
    return h.max_difference(initial, result["state"]["network"])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_ranks_hold_the_same_state_as_one_process_on_the_whole_batch(runs, scheme):
    """Catches: gradients not averaged (no DDP, or the scheme's head outside it), teacher/mask tokens not
    broadcast at the start, buffers not merged after the step, each rank taking the whole batch."""
    for optimiser in ("adamw", "sgd"):
        rank0, rank1 = load(runs, scheme, f"through_{optimiser}", 0), load(runs, scheme, f"through_{optimiser}", 1)
        assert (rank0["batch_size"], rank1["batch_size"]) == (1, 1)  # nnU-Net's split of the plans' batch of 2
        assert h.max_difference(rank0["state"], rank1["state"]) == 0.0, optimiser  # bitwise equal on every rank
    rank0, rank1 = load(runs, scheme, "through_sgd", 0), load(runs, scheme, "through_sgd", 1)
    single = load(runs, scheme, "from_initial_sgd")
    assert single["batch_size"] == 2
    difference, change = h.max_difference(rank0["state"], single["state"]), weight_change(runs, scheme, single)
    assert difference < h.RELATIVE_TOLERANCE * change, f"{scheme}: {difference:.3g} of a weight change {change:.3g}"
    print(f"{scheme}: max |two ranks - one process| = {difference:.3g}, largest weight change {change:.3g}")
    rank_mean_loss = [(a + b) / 2 for a, b in zip(rank0["losses"], rank1["losses"])]
    assert rank_mean_loss == pytest.approx(single["losses"], rel=1e-5)
    if scheme == "HeadAndBuffers":
        assert rank0["state"]["scheme"]["steps"].item() == len(h.EPOCHS)
        assert rank0["state"]["scheme"]["error_ema"].item() > 0


@pytest.mark.parametrize("scheme", SCHEMES)
def test_resumed_ranks_continue_identically(runs, scheme):
    """--c on two ranks continues exactly as the uninterrupted run (AdamW, bitwise); on one process as the
    uninterrupted two-rank run, within the tolerance (SGD). Catches: a rank not loading the checkpoint (a fresh
    rank's random init would be broadcast or kept), RNG or optimiser state not restored."""
    for rank in (0, 1):
        through, resumed = load(runs, scheme, "through_adamw", rank), load(runs, scheme, "from_mid_adamw", rank)
        assert h.max_difference(through["state"], resumed["state"]) == 0.0
        assert resumed["losses"] == through["losses"][h.RESUME_AT:]
    through, one = load(runs, scheme, "through_sgd"), load(runs, scheme, "from_mid_sgd")
    assert h.max_difference(through["state"], one["state"]) < h.RELATIVE_TOLERANCE * weight_change(runs, scheme, one)


def test_ranks_draw_different_batches_and_masks_reproducibly(runs):
    """From one shared RNG state (as after loading a checkpoint) the ranks draw different crops and masks, and
    the same ones again from the same state. Catches: no per-rank reseeding (identical draws after --c)."""
    ranks = [torch.load(os.path.join(runs, f"draws_rank{r}.pt"), weights_only=False) for r in (0, 1)]
    assert [r["batch_size"] for r in ranks] == [1, 1]
    for key in ("images", "mask"):
        assert not torch.equal(ranks[0]["draws"][0][key], ranks[1]["draws"][0][key]), key
        for r in ranks:
            assert torch.equal(r["draws"][0][key], r["draws"][1][key]), key


def test_real_cli_two_cpu_ranks_then_continue_on_one(demo3d, tmp_path):
    """nnUNetv2_pretrain -device cpu -num_gpus 2 (gloo) killed after epoch 1, then --c in one process: rank 0 alone
    wrote the log and checkpoints, and the run continues at the saved epoch."""
    results = tmp_path / "results"
    env = demo3d.train_env(results, nnUNet_anatomask_pretrain_epochs="3")
    folder = os.path.join(fold_folder(results, demo3d.dataset_name, "nnUNetTrainerRandomMask", "3d_fullres", "all"),
                          "pretraining")
    cmd = [os.path.join(BIN, "nnUNetv2_pretrain"), "990", "3d_fullres", "all", "-tr", "nnUNetTrainerRandomMask",
           "-device", "cpu"]
    kill_after_epoch(cmd + ["-num_gpus", "2"], env, os.path.join(folder, "checkpoint_latest.pth"), 1)
    first_log = stage1_log_text(os.path.dirname(folder))
    assert "DDP: 2 ranks, batch size 1 per rank, global batch 2" in first_log
    assert first_log.count("Epoch 0 (stage 1: RandomMask pretraining, epochs 0-2)") == 1  # one writer
    run_cli(["nnUNetv2_pretrain", "990", "3d_fullres", "all", "-tr", "nnUNetTrainerRandomMask", "-device", "cpu",
             "--c"], env)
    log = stage1_log_text(os.path.dirname(folder))
    assert "Resuming stage 1 (RandomMask)" in log and "Epoch 2 (stage 1: RandomMask pretraining" in log
    assert load_weights_only(os.path.join(folder, "checkpoint_final.pth"))["current_epoch"] == 3
