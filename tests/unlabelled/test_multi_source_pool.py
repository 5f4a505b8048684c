"""nnUNetv2_plan_and_preprocess_unlabelled -d A B C --as P through the real console script, on generated data: the
sources' images linked in the pool's channel order (matched by name), one fingerprint over every source, each
source's share in the log, source weights reaching stage 1's sampler; a source whose channels do not match is
refused with its name."""
import json
import os

import pytest
import torch

from nnunet_anatomask.example_data import make_example_dataset
from nnunet_anatomask.trainers.registry import nnUNetTrainerRandomMask
from nnunet_anatomask.trainers.stage1_sampling import draw_shares, stage1_cases
from nnunet_anatomask.unlabelled.pool import PoolError, collect_sources
from tests.conftest import clean_env, run_cli

A, B, C, POOL = 611, 612, 613, 610


def set_channels(folder: str, names: list) -> None:
    path = os.path.join(folder, "dataset.json")
    with open(path) as f:
        dataset_json = json.load(f)
    dataset_json["channel_names"] = {str(i): n for i, n in enumerate(names)}
    with open(path, "w") as f:
        json.dump(dataset_json, f)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_pool")
    raw = str(root / "raw")
    env = clean_env(nnUNet_raw=raw, nnUNet_preprocessed=str(root / "preprocessed"),
                    nnUNet_results=str(root / "results"))
    shape = dict(shape=(16, 16, 16), num_test=0, num_channels=2)
    set_channels(make_example_dataset(raw, A, "SourceA", num_train=3, images_only=True, seed=0, **shape),
                 ["T1", "T2"])
    set_channels(make_example_dataset(raw, B, "SourceB", num_train=1, images_only=True, seed=1, **shape),
                 ["t2", "t1"])  # the other order, other case: matched by name
    set_channels(make_example_dataset(raw, C, "SourceC", num_train=2, seed=2, **shape), ["T1", "T2"])  # labelled
    proc = run_cli(["nnUNetv2_plan_and_preprocess_unlabelled", "-d", A, B, C, "--as", POOL, "-c", "3d_fullres",
                    "-np", 1, "-npfp", 1, "--source_weights", 1, 2, 1], env)
    return {"root": root, "raw": raw, "env": env, "stdout": proc.stdout,
            "folder": os.path.join(raw, "Dataset610_Pool"),
            "pre": os.path.join(str(root / "preprocessed"), "Dataset610_Pool")}


def test_sources_linked_in_the_pools_channel_order(pool):
    images = os.path.join(pool["folder"], "imagesTr")
    assert len(os.listdir(images)) == (3 + 1 + 2) * 2
    b = os.path.join(pool["raw"], "Dataset612_SourceB", "imagesTr")
    assert os.readlink(os.path.join(images, "D612_case_000_0000.nii.gz")) == os.path.join(b, "case_000_0001.nii.gz")
    assert os.readlink(os.path.join(images, "D612_case_000_0001.nii.gz")) == os.path.join(b, "case_000_0000.nii.gz")
    with open(os.path.join(pool["folder"], "dataset.json")) as f:
        dataset_json = json.load(f)
    assert dataset_json["channel_names"] == {"0": "T1", "1": "T2"} and dataset_json["labels"] == {"background": 0}
    assert dataset_json["pool_sources"]["Dataset612_SourceB"] == {"prefix": "D612_", "cases": 1, "weight": 2.0,
                                                                  "labels_ignored": False}
    assert dataset_json["pool_sources"]["Dataset613_SourceC"]["labels_ignored"] is True


def test_one_fingerprint_over_every_source_and_each_share_in_the_log(pool):
    with open(os.path.join(pool["pre"], "dataset_fingerprint.json")) as f:
        assert len(json.load(f)["shapes_after_crop"]) == 6
    data = os.path.join(pool["pre"], "nnUNetPlans_3d_fullres")
    assert len([f for f in os.listdir(data) if f.endswith(".pkl")]) == 6
    out = pool["stdout"]
    assert "Pool Dataset610_Pool: 6 cases from 3 sources, channels ['T1', 'T2']" in out
    assert "Dataset611_SourceA: 3 cases (50.0 % of the pool), 25.0 % of stage-1 draws (weight 1)" in out
    assert "Dataset612_SourceB: 1 cases (16.7 % of the pool), 50.0 % of stage-1 draws (weight 2)" in out
    assert "its labels are ignored" in out


def test_stage1_draws_with_the_source_weights(pool, monkeypatch):
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(k, pool["env"][k])
    with open(os.path.join(pool["pre"], "nnUNetPlans.json")) as f:
        plans = dict(json.load(f), continue_training=False)
    with open(os.path.join(pool["pre"], "dataset.json")) as f:
        dataset_json = json.load(f)
    trainer = nnUNetTrainerRandomMask(plans=plans, configuration="3d_fullres", fold="all",
                                      dataset_json=dataset_json, device=torch.device("cpu"))
    cases, p, line = stage1_cases(trainer)
    assert len(cases) == 6 and draw_shares(cases, p, dataset_json) == pytest.approx(
        {"Dataset611_SourceA": 0.25, "Dataset612_SourceB": 0.5, "Dataset613_SourceC": 0.25})
    assert "Stage-1 cases: 6; pool sources (source weights): Dataset611_SourceA 25.0 %" in line


def test_mismatching_sources_are_refused_by_name(pool, tmp_path):
    raw = pool["raw"]
    set_channels(make_example_dataset(raw, 614, "SourceCT", num_train=1, num_test=0, shape=(8, 8, 8),
                                      num_channels=2, images_only=True), ["CT", "T2"])
    with pytest.raises(PoolError, match=r"Dataset614_SourceCT has channels \['CT', 'T2'\], the pool \['T1', 'T2'\]"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("nnUNet_raw", raw)
            mp.setenv("nnUNet_preprocessed", pool["env"]["nnUNet_preprocessed"])
            mp.setenv("nnUNet_results", pool["env"]["nnUNet_results"])
            collect_sources(raw, [A, 614])
    proc = run_cli(["nnUNetv2_plan_and_preprocess_unlabelled", "-d", A, 614, "--as", 615, "-c", "3d_fullres"],
                   pool["env"], check=False)
    assert proc.returncode != 0 and "Dataset614_SourceCT has channels" in proc.stderr and "Fix:" in proc.stderr
    with pytest.raises(PoolError, match="one weight per source"):
        collect_sources(raw, [A, B], weights=[1.0])
