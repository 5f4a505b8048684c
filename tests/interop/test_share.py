"""nnUNetv2_share_pretrained: the folder nnU-Net main downloads, the generated model card, and --push without a
network (HF_HUB_OFFLINE=1: huggingface_hub refuses before any connection; nothing is downloaded or uploaded)."""
import json
import os
import sys

import pytest

from nnunet_anatomask.interop import share
from tests.conftest import run_cli
from tests.interop.test_adaptation_plan import saved_stage1
from tests.trainers.helpers import load_weights_only

FILES = {"checkpoint_final.pth", "adaptation_plan.json", "config.json", "README.md"}


@pytest.fixture(scope="module")
def stage1_checkpoint(demo3d, tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    try:
        path, _ = saved_stage1(demo3d, "nnUNetTrainerAnatoMask", monkeypatch, tmp_path_factory.mktemp("stage1"))
    finally:
        monkeypatch.undo()
    return path


@pytest.fixture(scope="module")
def shared(demo3d, stage1_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("share") / "AnatoMask-demo"
    proc = run_cli(["nnUNetv2_share_pretrained", stage1_checkpoint, "-o", folder], demo3d.env(str(folder.parent)))
    return folder, proc.stdout


def test_folder_has_nnunet_mains_files_and_a_slim_checkpoint(shared, stage1_checkpoint):
    """The files nnU-Net main's download fetches (adaptation_plan.json, checkpoint_final.pth, config.json) and the
    card; the checkpoint loads with weights_only, keeps weights, plan and citations, drops what only resuming
    needs (optimiser, the scheme state with its teacher)."""
    folder, stdout = shared
    assert set(os.listdir(folder)) == FILES
    assert "licence is to fill in" in stdout
    original, ckpt = load_weights_only(stage1_checkpoint), load_weights_only(os.path.join(folder,
                                                                                          "checkpoint_final.pth"))
    assert "optimizer_state" not in ckpt and "scheme_state" not in ckpt
    assert ckpt["nnssl_adaptation_plan"] == original["nnssl_adaptation_plan"]
    assert ckpt["citations"] == original["citations"] and ckpt["scheme"] == "AnatoMask"
    assert ckpt["network_weights"].keys() == original["network_weights"].keys()
    with open(os.path.join(folder, "adaptation_plan.json")) as f:
        assert json.load(f) == original["nnssl_adaptation_plan"]
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    assert config["architecture"] == "PlainConvUNet" and config["scheme"] == "AnatoMask"
    assert config["plans_hash"] == original["plans_hash"] and config["licence"] is None


def test_model_card_gives_what_a_user_needs(shared, stage1_checkpoint, demo3d):
    """Scheme and settings, budget, dataset and number of images, modality and normalisation, spacing and patch,
    plans hash, a licence to fill in, the citations, and both ways to fine-tune."""
    folder, _ = shared
    card = open(os.path.join(folder, "README.md")).read()
    ckpt = load_weights_only(stage1_checkpoint)
    for expected in ["license: other", "# AnatoMask stage-1 weights: PlainConvUNet", "| mask_ratio | 0.6 |",
                     "| teacher_ratio | 0.6 |", f"0 of {ckpt['budget']['epochs']} epochs x "
                     f"{ckpt['budget']['iterations_per_epoch']} iterations, batch size 2",
                     f"- Dataset or pool: {demo3d.dataset_name}, 5 preprocessed images; stage 1 used fold 0's",
                     "- Modality (channels): 0: MRI", "- Normalisation: ZScoreNormalization",
                     "- Spacing: [1.0, 1.0, 1.0]; patch size: [32, 32, 32]", f"plans hash {ckpt['plans_hash']}",
                     "FILL IN (the licence", "Isensee, F., Jaeger, P. F.", "AnatoMask: enhancing medical image",
                     "-tr nnUNetTrainerFinetune", "nnUNetv2_preprocess_like_nnssl -d DATASET -n NAME -pc",
                     "-tr PretrainedTrainer"]:
        assert expected in card, expected


def test_push_without_network_is_one_error_and_keeps_the_folder(demo3d, stage1_checkpoint, tmp_path):
    folder = tmp_path / "to_push"
    proc = run_cli(["nnUNetv2_share_pretrained", stage1_checkpoint, "-o", folder, "--licence", "cc-by-4.0",
                    "--push", "someone/anatomask-demo"], demo3d.env(str(tmp_path), HF_HUB_OFFLINE="1"), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "Could not upload to the Hugging Face repository someone/anatomask-demo" in proc.stderr
    assert f"The folder {folder} is kept" in proc.stderr and set(os.listdir(folder)) == FILES
    assert "license: cc-by-4.0" in open(folder / "README.md").read()


def test_push_without_huggingface_hub_names_the_extra(stage1_checkpoint, monkeypatch, tmp_path, capsys):
    """huggingface_hub is an optional extra: without it, --push says how to install it and keeps the folder."""
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # `import huggingface_hub` raises ImportError
    with pytest.raises(SystemExit) as info:
        share.main([stage1_checkpoint, "-o", str(tmp_path / "f"), "--push", "someone/x"])
    assert "pip install 'nnunet-anatomask[hub]'" in str(info.value) and "is kept" in str(info.value)
    assert set(os.listdir(tmp_path / "f")) == FILES


def test_refuses_a_folder_with_other_files(stage1_checkpoint, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match=r"holds other files \(notes.txt\)\. Fix: choose an empty or new folder"):
        share.main([stage1_checkpoint, "-o", str(tmp_path)])
    assert os.listdir(tmp_path) == ["notes.txt"]
