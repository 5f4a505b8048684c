"""Stage 1 across nodes: nnUNetv2_pretrain started by torchrun on two "nodes" of one process each (static env://
rendezvous on 127.0.0.1, gloo on the CPU), as a multi-node run starts it (docs/pools_and_ddp.md). Both processes
have LOCAL_RANK 0; the ranks draw from disjoint shards of the cases; rank 0 alone writes. Slow (two nnU-Net
start-ups side by side); the sharding itself is checked in the default suite (test_stage1_sampling.py)."""
import os
import socket
import subprocess
import sys

import pytest

from nnunet_anatomask.cli import CommandError, env_launch
from tests.conftest import clean_env
from tests.trainers.helpers import fold_folder, load_weights_only, stage1_log_text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_env_launch_reads_torchruns_variables(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert env_launch() is None
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert env_launch() == (3, 4, 1)
    monkeypatch.setenv("LOCAL_RANK", "x")
    with pytest.raises(CommandError, match="must be integers"):  # main() ends the program with it
        env_launch()


def test_num_gpus_under_torchrun_is_refused_before_any_work():
    """-num_gpus under torchrun would start processes per process."""
    proc = subprocess.run([sys.executable, "-m", "nnunet_anatomask.cli", "990", "3d_fullres", "all", "-tr",
                           "nnUNetTrainerRandomMask", "-device", "cpu", "-num_gpus", "2"],
                          env=clean_env(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "leave out -num_gpus" in proc.stderr


@pytest.mark.slow
def test_two_nodes_under_torchrun(demo3d, tmp_path):
    results = tmp_path / "results"
    env = demo3d.train_env(results, nnUNet_anatomask_pretrain_epochs="2", OMP_NUM_THREADS="1")
    port = str(free_port())
    procs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1", "--node_rank",
         str(node), "--master_addr", "127.0.0.1", "--master_port", port, "-m", "nnunet_anatomask.cli", "990",
         "3d_fullres", "all", "-tr", "nnUNetTrainerRandomMask", "-device", "cpu"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for node in (0, 1)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n---\n".join(o[-4000:] for o in outputs)
    folder = fold_folder(results, demo3d.dataset_name, "nnUNetTrainerRandomMask", "3d_fullres", "all")
    log = stage1_log_text(folder)
    assert "DDP: 2 ranks, batch size 1 per rank, global batch 2" in log
    assert "Stage-1 cases: 5; rank 0 of 2 draws from 3 of them" in log  # 5 cases, padded to 6, split in two
    assert log.count("Epoch 0 (stage 1: RandomMask pretraining, epochs 0-1)") == 1  # one writer
    assert load_weights_only(os.path.join(folder, "pretraining", "checkpoint_final.pth"))["current_epoch"] == 2
