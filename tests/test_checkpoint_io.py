import os
import random

import numpy as np
import pytest
import torch

from nnunet_anatomask import checkpoint_io


def test_rng_state_round_trip_weights_only(tmp_path):
    state = checkpoint_io.rng_state()
    path = str(tmp_path / "rng.pth")
    checkpoint_io.atomic_save({"rng": state}, path)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    checkpoint_io.set_rng_state(torch.load(path, weights_only=True)["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]
    assert [p for p in os.listdir(tmp_path) if ".tmp" in p] == []


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(checkpoint_io.CheckpointError, match="does not exist"):
        checkpoint_io.load_checkpoint_file(str(tmp_path / "missing.pth"))
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(checkpoint_io.CheckpointError, match="truncated or not a PyTorch checkpoint"):
        checkpoint_io.load_checkpoint_file(str(text))
    good = tmp_path / "good.pth"
    torch.save({"network_weights": {"a": torch.zeros(3)}}, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(checkpoint_io.CheckpointError, match="truncated"):
        checkpoint_io.load_checkpoint_file(str(cut))
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(checkpoint_io.CheckpointError, match="no 'network_weights'"):
        checkpoint_io.load_checkpoint_file(str(other))


def test_weight_mismatch_names_first_key_and_both_shapes():
    model = {"encoder.w": torch.zeros(4, 1, 3), "decoder.w": torch.zeros(2), "decoder.seg_layers.0.w": torch.zeros(3)}
    weights = {"encoder.w": torch.zeros(4, 2, 3), "decoder.w": torch.zeros(2)}
    with pytest.raises(checkpoint_io.CheckpointError, match=r"'encoder.w' has shape \(4, 2, 3\).*\(4, 1, 3\)"):
        checkpoint_io.check_weights_match(model, weights, "x")
    with pytest.raises(checkpoint_io.CheckpointError, match="'decoder.w'.*missing"):
        checkpoint_io.check_weights_match(model, {"encoder.w": torch.zeros(4, 1, 3)}, "x")
    checkpoint_io.check_weights_match(model, {"encoder.w": torch.zeros(4, 1, 3), "decoder.w": torch.zeros(2)}, "x")


def test_check_same_names_field():
    with pytest.raises(checkpoint_io.CheckpointError, match="configuration = '2d'"):
        checkpoint_io.check_same({"configuration": "2d"}, {"configuration": "3d_fullres"}, "ckpt")
    checkpoint_io.check_same({}, {"configuration": "3d_fullres"}, "ckpt")  # absent fields are not checked


def test_a_failed_write_removes_its_partial_file_and_names_path_size_and_space(tmp_path):
    """Any error inside the write (here pickling fails part-way; a full disk in test_checkpoint_faults.py): the
    temporary file is gone, the previous checkpoint is intact, the message names the path, sizes and free space."""
    path = tmp_path / "checkpoint_latest.pth"
    checkpoint_io.atomic_save({"network_weights": {"w": torch.zeros(10)}}, str(path))
    before = path.read_bytes()
    with pytest.raises(checkpoint_io.CheckpointWriteError,
                       match=rf"Writing the checkpoint {path} failed after \d+\.\d MB \(\w+Error: .*\); its file "
                             rf"system had \d+\.\d MB free when the write started; the previous checkpoint at this "
                             rf"path is 0\.0 MB, left as it was\. The partial file was removed\. Fix: free disk space"):
        checkpoint_io.atomic_save({"network_weights": {"w": torch.zeros(1000)}, "hook": lambda: None}, str(path))
    assert os.listdir(tmp_path) == ["checkpoint_latest.pth"] and path.read_bytes() == before
