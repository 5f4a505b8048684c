"""Bad input fails before any work with one message that names the problem and the fix (in-process, fast)."""
import copy
import os

import pytest
import torch
from nnunetv2.run.run_training import maybe_load_checkpoint

from nnunet_anatomask.checkpoint_io import CheckpointError
from nnunet_anatomask.knobs import KnobError
from nnunet_anatomask.pretraining.grid import MaskGridError
from nnunet_anatomask.pretraining.schemes.base import SchemeConfigError
from nnunet_anatomask.trainers.registry import nnUNetTrainerFinetune, nnUNetTrainerRandomMask, nnUNetTrainerScratch
from nnunet_anatomask.trainers.stage2 import ConfigurationError
from tests.trainers.helpers import make_trainer


@pytest.fixture
def good_weights(demo3d, monkeypatch, tmp_path) -> dict:
    trainer = make_trainer(demo3d, nnUNetTrainerScratch, monkeypatch, tmp_path)
    trainer.initialize()
    return {"network_weights": trainer.network.state_dict()}


def finetune_trainer(demo3d, monkeypatch, tmp_path, path):
    """nnUNetTrainerFinetune as `nnUNet_anatomask_pretrained_weights=PATH nnUNetv2_train ...` builds and initializes
    it: the file is checked in initialize(), before any training."""
    monkeypatch.setenv("nnUNet_anatomask_pretrained_weights", str(path))
    trainer = make_trainer(demo3d, nnUNetTrainerFinetune, monkeypatch, tmp_path)
    trainer.initialize()
    return trainer


def test_shape_mismatch_names_key_and_shapes(demo3d, good_weights, monkeypatch, tmp_path):
    weights = copy.deepcopy(good_weights)
    key = next(k for k in weights["network_weights"] if k.endswith("conv.weight"))
    w = weights["network_weights"][key]
    weights["network_weights"][key] = torch.zeros(w.shape[0], 2, *w.shape[2:])  # two input channels
    torch.save(weights, tmp_path / "two_channels.pth")
    expected = rf"'{key}' has shape \({w.shape[0]}, 2, .*\) in the checkpoint but \({w.shape[0]}, 1, "
    with pytest.raises(CheckpointError, match=expected):
        finetune_trainer(demo3d, monkeypatch, tmp_path, tmp_path / "two_channels.pth")


def test_truncated_and_not_a_checkpoint(demo3d, good_weights, monkeypatch, tmp_path):
    torch.save(good_weights, tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        finetune_trainer(demo3d, monkeypatch, tmp_path, tmp_path / "cut.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        finetune_trainer(demo3d, monkeypatch, tmp_path, tmp_path / "text.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        finetune_trainer(demo3d, monkeypatch, tmp_path, tmp_path / "missing.pth")


def test_other_configuration(demo3d, good_weights, monkeypatch, tmp_path):
    torch.save({**good_weights, "configuration": "2d"}, tmp_path / "from_2d.pth")
    with pytest.raises(CheckpointError, match="configuration = '2d'.*'3d_fullres'"):
        finetune_trainer(demo3d, monkeypatch, tmp_path, tmp_path / "from_2d.pth")


def transferred_keys(state: dict) -> list[str]:
    keys = [k for k in state if ".seg_layers." not in k]
    assert any(k.startswith("encoder.") for k in keys) and any(k.startswith("decoder.") for k in keys)
    return keys


def test_matching_weights_pass_validation_and_reach_the_network(demo3d, good_weights, monkeypatch, tmp_path):
    """Matching weights named by the setting pass our checks and end up in the network at the start of stage 2:
    every tensor but the seg_layers equals the file's, while the trainer's own random init differed from them in
    every conv weight (so equality is no accident). Mutation caught: the weights not loaded (the load in
    load_pretrained removed)."""
    torch.save(good_weights, tmp_path / "good.pth")
    trainer = finetune_trainer(demo3d, monkeypatch, tmp_path, tmp_path / "good.pth")
    own_init = {k: v.clone() for k, v in trainer.network.state_dict().items()}
    trainer.load_pretrained()
    loaded, expected = trainer.network.state_dict(), good_weights["network_weights"]
    keys = transferred_keys(loaded)
    assert all(not torch.equal(own_init[k], expected[k]) for k in keys if k.endswith("conv.weight"))
    for key in keys:
        assert torch.equal(loaded[key], expected[key]), key


def test_nnunets_own_pretrained_weights_flag_still_works(demo3d, good_weights, monkeypatch, tmp_path):
    """`nnUNetv2_train ... -tr nnUNetTrainerFinetune -pretrained_weights PATH`: nnU-Net's maybe_load_checkpoint
    loads the file after initialize(); stage 2 then starts from it instead of refusing. Giving the setting as
    well is refused (which one would win?)."""
    torch.save(good_weights, tmp_path / "good.pth")
    trainer = make_trainer(demo3d, nnUNetTrainerFinetune, monkeypatch, tmp_path)
    maybe_load_checkpoint(trainer, False, False, str(tmp_path / "good.pth"))  # what nnUNetv2_train does
    trainer.load_pretrained()
    for key in transferred_keys(trainer.network.state_dict()):
        assert torch.equal(trainer.network.state_dict()[key], good_weights["network_weights"][key]), key
    both = finetune_trainer(demo3d, monkeypatch, tmp_path, tmp_path / "good.pth")
    maybe_load_checkpoint(both, False, False, str(tmp_path / "good.pth"))
    with pytest.raises(ConfigurationError, match="-pretrained_weights was given, and so was .*good.pth"):
        both.load_pretrained()


def test_scheme_trainer_refuses_pretrained_weights(demo3d, good_weights, monkeypatch, tmp_path):
    """Stage 1 would silently replace them: refused as a setting (at once) and through nnU-Net's flag (when
    stage 2 would start, before stage 1 runs)."""
    monkeypatch.setenv("nnUNet_anatomask_pretrained_weights", "x.pth")
    with pytest.raises(ConfigurationError, match="nnUNetTrainerRandomMask does not start from it.*nnUNetTrainerFinetune"):
        make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path)
    monkeypatch.delenv("nnUNet_anatomask_pretrained_weights")
    torch.save(good_weights, tmp_path / "good.pth")
    trainer = make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path)
    maybe_load_checkpoint(trainer, False, False, str(tmp_path / "good.pth"))
    with pytest.raises(ConfigurationError, match="nnUNetTrainerFinetune -pretrained_weights"):
        trainer.run_training()


def test_scratch_refuses_the_pretrained_weights_setting(demo3d, monkeypatch, tmp_path):
    monkeypatch.setenv("nnUNet_anatomask_pretrained_weights", "x.pth")
    with pytest.raises(ConfigurationError, match="nnUNetTrainerScratch does not start from it.*Fix"):
        make_trainer(demo3d, nnUNetTrainerScratch, monkeypatch, tmp_path)


def test_finetune_requires_pretrained_weights(demo3d, monkeypatch, tmp_path):
    trainer = make_trainer(demo3d, nnUNetTrainerFinetune, monkeypatch, tmp_path)
    with pytest.raises(ConfigurationError, match="needs -pretrained_weights PATH.*nnUNet_anatomask_pretrained_weights=PATH"):
        trainer.run_training()


def test_bad_scheme_setting_is_refused_before_any_folder(demo3d, monkeypatch, tmp_path):
    """nnUNet_anatomask_scheme_config is checked against the trainer's scheme when the trainer is built: the
    unknown name is refused with the closest one, and nnU-Net's fold folder is not left behind."""
    monkeypatch.setenv("nnUNet_anatomask_scheme_config", '{"mask_ration": 0.75}')
    with pytest.raises(SchemeConfigError, match="RandomMask has no setting 'mask_ration'. Did you mean 'mask_ratio'"):
        make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path / "results")
    assert not os.path.exists(tmp_path / "results" / demo3d.dataset_name)


def test_patch_too_small_for_mask_grid(demo3d, monkeypatch, tmp_path):
    plans = demo3d.plans()
    plans["configurations"]["3d_fullres"]["patch_size"] = [8, 32, 32]
    with pytest.raises(MaskGridError, match="at least 2 cells"):
        make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path, plans=plans)


@pytest.mark.parametrize("name", ["nnUNet_anatomask_pretrain_epochs", "nnUNet_anatomask_iters_per_epoch"])
def test_bad_knob_names_variable(demo3d, monkeypatch, tmp_path, name):
    monkeypatch.setenv(name, "-3")
    with pytest.raises(KnobError, match=name):
        make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path)


def test_too_few_cases_for_five_folds(demo3d, monkeypatch, tmp_path):
    """A copy of the preprocessed dataset with 3 cases and no splits file: a clear message, not sklearn's."""
    import shutil

    copy_root = tmp_path / "preprocessed"
    shutil.copytree(demo3d.preprocessed, copy_root)
    dataset = copy_root / demo3d.dataset_name
    (dataset / "splits_final.json").unlink(missing_ok=True)
    data = dataset / "nnUNetPlans_3d_fullres"
    for case in sorted(p.stem for p in data.glob("*.pkl"))[3:]:
        for f in data.glob(case + "*"):  # image, properties and segmentation of that case
            f.unlink()
    planned = copy.copy(demo3d)
    planned.preprocessed = str(copy_root)
    trainer = make_trainer(planned, nnUNetTrainerRandomMask, monkeypatch, tmp_path)
    with pytest.raises(ConfigurationError, match="has 3 training cases.*needs at least 5"):
        trainer.run_pretraining()


def test_configuration_missing_from_plans(demo3d, monkeypatch, tmp_path):
    with pytest.raises(RuntimeError, match="3d_lowres not found in plans"):  # nnU-Net's own message
        make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path, config="3d_lowres")


def test_preprocessed_data_missing(demo3d, monkeypatch, tmp_path):
    plans = demo3d.plans()
    plans["configurations"]["3d_unprocessed"] = {"inherits_from": "3d_fullres",
                                                 "data_identifier": "nnUNetPlans_3d_unprocessed"}
    trainer = make_trainer(demo3d, nnUNetTrainerRandomMask, monkeypatch, tmp_path, config="3d_unprocessed",
                           plans=plans)
    with pytest.raises(ConfigurationError, match="No preprocessed data for configuration '3d_unprocessed'.*"
                                                 "nnUNetv2_plan_and_preprocess"):
        trainer.run_pretraining()


def test_glmae_refuses_a_batch_of_one_before_any_step(demo3d, monkeypatch, tmp_path):
    """GL-MAE needs a global and a local view per process; plans with batch 1 (or -num_gpus splitting the batch
    down to 1) are named before stage 1 builds anything."""
    from nnunet_anatomask.trainers.registry import nnUNetTrainerGLMAE
    from nnunet_anatomask.trainers.stage1 import BatchTooSmallError

    plans = demo3d.plans()
    plans["configurations"]["3d_fullres"]["batch_size"] = 1
    trainer = make_trainer(demo3d, nnUNetTrainerGLMAE, monkeypatch, tmp_path, plans=plans)
    with pytest.raises(BatchTooSmallError, match="GLMAE needs at least 2 crops per process, but each gets 1.*Fix"):
        trainer.run_pretraining()
    assert trainer.stage1.model is None  # refused before the masked model was built
