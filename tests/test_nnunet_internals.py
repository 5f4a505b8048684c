"""One check per nnU-Net / dynamic-network-architectures / batchgenerators internal that docs/nnunet_internals.md
lists, in-process and fast: signatures via inspect, attributes and behaviour on small built trainers and networks,
source-level checks only where nothing else can see the thing. A failure reads "nnU-Net internal X moved: see
docs/nnunet_internals.md#anchor; fix: <the page's advice>".
"""
import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import io
import json
import os
import re
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tests.source_imports import ROOT, absolute_imports

DOC = os.path.join(ROOT, "docs", "nnunet_internals.md")
RELIED_ON_PACKAGES = ("nnunetv2", "dynamic_network_architectures", "batchgenerators", "batchgeneratorsv2")


# ==================================================================== the failure message
def doc_sections() -> dict[str, str]:
    """{anchor: section text} of docs/nnunet_internals.md (headings end in `{#anchor}`)."""
    with open(DOC, encoding="utf-8") as f:
        parts = re.split(r"^## .*\{#([a-z0-9-]+)\}\s*$", f.read(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def advice(anchor: str) -> str:
    """The entry's *If it moves* line, joined into one line."""
    section = doc_sections().get(anchor)
    assert section is not None, f"docs/nnunet_internals.md has no entry {{#{anchor}}}"
    match = re.search(r"\*\*If it moves:\*\*(.*?)(?=\n- \*\*|\n\n|\Z)", section, flags=re.S)
    assert match, f"docs/nnunet_internals.md#{anchor} has no '**If it moves:**' line"
    return " ".join(match.group(1).split())


@contextlib.contextmanager
def relied_on(anchor: str, what: str):
    """Turn any failure inside into the docs page's advice for this internal."""
    try:
        yield
    except (Exception, pytest.fail.Exception) as error:  # AssertionError, ImportError, ..., pytest.raises' own
        pytest.fail(f"nnU-Net internal {what} moved: see docs/nnunet_internals.md#{anchor}; fix: {advice(anchor)}"
                    f"\n  ({type(error).__name__}: {error})", pytrace=False)


def parameters(func) -> list[str]:
    return [p for p in inspect.signature(func).parameters if p != "self"]


def test_every_entry_has_a_test_and_every_test_an_entry():
    with open(__file__, encoding="utf-8") as f:
        tested = set(re.findall(r'relied_on\("([a-z0-9-]+)"', f.read()))
    documented = set(doc_sections())
    assert documented == tested, f"entries without a test: {documented - tested}; tests without an entry: " \
                                 f"{tested - documented}"
    for anchor in documented:
        assert advice(anchor)


# ==================================================================== fixtures: small real trainers and networks
@pytest.fixture(scope="module")
def synthetic():
    """An in-memory plans dict (one small 3d_fullres PlainConvUNet configuration) and dataset.json."""
    from nnunet_anatomask.benchmark import synthetic_plans
    return synthetic_plans("tiny")


@pytest.fixture(scope="module")
def folders(synthetic, tmp_path_factory):
    """nnUNet_preprocessed (one stand-in data file, so that initialize() can infer the dataset class) and
    nnUNet_results in a temporary folder, for this module."""
    plans, _ = synthetic
    root = tmp_path_factory.mktemp("internals")
    data = root / "preprocessed" / plans["dataset_name"] / plans["configurations"]["3d_fullres"]["data_identifier"]
    data.mkdir(parents=True)
    (data / "stand_in.b2nd").touch()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("nnUNet_preprocessed", str(root / "preprocessed"))
        mp.setenv("nnUNet_results", str(root / "results"))
        yield root


def build_trainer(synthetic, trainer_class=None, initialize: bool = True):
    """A real nnUNetTrainer_warmup (stage 2's base) on the synthetic plans, on the CPU, as nnUNetv2_train builds it."""
    from nnunetv2.training.nnUNetTrainer.variants.lr_schedule.nnUNetTrainer_warmup import nnUNetTrainer_warmup
    plans, dataset_json = synthetic
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = (trainer_class or nnUNetTrainer_warmup)({**plans, "continue_training": False}, "3d_fullres", 0,
                                                          dataset_json, torch.device("cpu"))
        if initialize:
            trainer.initialize()
    return trainer


@pytest.fixture(scope="module")
def trainer(synthetic, folders):
    return build_trainer(synthetic)


def small_unets() -> dict[str, nn.Module]:
    """dna's PlainConvUNet and ResidualEncoderUNet, 3 stages, 2D (fast), deep supervision off."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
    common = dict(input_channels=1, n_stages=3, features_per_stage=(4, 8, 16), conv_op=nn.Conv2d, kernel_sizes=3,
                  strides=(1, 2, 2), num_classes=2, conv_bias=True, norm_op=nn.InstanceNorm2d,
                  norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True})
    torch.manual_seed(0)
    return {"PlainConvUNet": PlainConvUNet(n_conv_per_stage=2, n_conv_per_stage_decoder=2, **common),
            "ResidualEncoderUNet": ResidualEncoderUNet(n_blocks_per_stage=(1, 1, 1), n_conv_per_stage_decoder=1,
                                                       **common)}


# ==================================================================== trainer lookup and construction
def test_trainer_lookup(monkeypatch, tmp_path):
    with relied_on("trainer-lookup", "recursive_find_trainer_class_by_name / nnUNet_extTrainer"):
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
        module = "nnunet_anatomask_internals_probe"
        (tmp_path / f"{module}.py").write_text(
            "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n"
            "class nnUNetTrainerInternalsProbe(nnUNetTrainer):\n    pass\n")
        monkeypatch.setenv("nnUNet_extTrainer", str(tmp_path))  # read at lookup time
        with contextlib.redirect_stdout(io.StringIO()):
            found = recursive_find_trainer_class_by_name("nnUNetTrainerInternalsProbe")
        assert found.__module__ == module, "ext-trainer modules are no longer imported as top-level modules"
        assert module not in sys.modules, "ext-trainer modules are no longer purged after the lookup"
        assert str(tmp_path) not in sys.path


def test_get_trainer_from_args(synthetic, monkeypatch, tmp_path):
    """The real get_trainer_from_args, on plans written to a temporary nnUNet_preprocessed; the probe trainer
    (found through nnUNet_extTrainer) reports the plans it was given."""
    with relied_on("get-trainer-from-args", "get_trainer_from_args"):
        from nnunetv2.run.run_training import get_trainer_from_args
        assert parameters(get_trainer_from_args) == ["dataset_name_or_id", "configuration", "fold", "trainer_name",
                                                     "plans_identifier", "continue_training", "device"]
        plans, dataset_json = synthetic
        folder = tmp_path / "preprocessed" / plans["dataset_name"]
        folder.mkdir(parents=True)
        (folder / "nnUNetPlans.json").write_text(json.dumps(plans))
        (folder / "dataset.json").write_text(json.dumps(dataset_json))
        (tmp_path / "ext").mkdir()
        (tmp_path / "ext" / "nnunet_anatomask_internals_plans_probe.py").write_text(
            "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n"
            "class nnUNetTrainerPlansProbe(nnUNetTrainer):\n"
            "    def __init__(self, plans, configuration, fold, dataset_json, device):\n"
            "        raise LookupError(f\"continue_training={plans.get('continue_training')!r}\")\n")
        monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
        monkeypatch.setenv("nnUNet_extTrainer", str(tmp_path / "ext"))
        with contextlib.redirect_stdout(io.StringIO()), pytest.raises(LookupError) as built:
            get_trainer_from_args(plans["dataset_name"], "3d_fullres", 0, "nnUNetTrainerPlansProbe", "nnUNetPlans",
                                  True, device=torch.device("cpu"))
    with relied_on("continue-training", 'plans["continue_training"] set by get_trainer_from_args'):
        assert str(built.value) == "continue_training=True"


def test_trainer_init_pops_continue_training(synthetic, folders):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    with relied_on("continue-training", 'plans["continue_training"] popped by nnUNetTrainer.__init__'):
        plans, dataset_json = synthetic
        given = {**plans, "continue_training": True}
        with contextlib.redirect_stdout(io.StringIO()):
            nnUNetTrainer(given, "3d_fullres", 0, dataset_json, torch.device("cpu"))
        assert "continue_training" not in given
        with pytest.raises(KeyError, match="continue_training"), contextlib.redirect_stdout(io.StringIO()):
            nnUNetTrainer(dict(plans), "3d_fullres", 0, dataset_json, torch.device("cpu"))


def test_pretrained_weights_reach_only_maybe_load_checkpoint(synthetic, folders, trainer, monkeypatch, tmp_path,
                                                             capsys):
    with relied_on("pretrained-weights-argv", "-pretrained_weights (run_training_entry / maybe_load_checkpoint)"):
        from nnunetv2.run.run_training import maybe_load_checkpoint, run_training_entry
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        monkeypatch.setattr(sys, "argv", ["nnUNetv2_train", "-h"])
        with pytest.raises(SystemExit):
            run_training_entry()
        assert "-pretrained_weights" in capsys.readouterr().out
        assert "pretrained_weights" not in inspect.signature(nnUNetTrainer.__init__).parameters
        assert parameters(maybe_load_checkpoint) == ["nnunet_trainer", "continue_training", "validation_only",
                                                     "pretrained_weights_file"]
        path = str(tmp_path / "weights.pth")
        torch.save({"network_weights": trainer.network.state_dict()}, path)
        fresh = build_trainer(synthetic, initialize=False)
        with contextlib.redirect_stdout(io.StringIO()):
            maybe_load_checkpoint(fresh, False, False, path)
        assert fresh.was_initialized, "maybe_load_checkpoint no longer initialises the trainer before loading"
        loaded = fresh.network.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in trainer.network.state_dict().items()
                   if ".seg_layers." not in k)


def test_load_pretrained_weights_skips_seg_layers(tmp_path):
    with relied_on("load-pretrained-weights", "load_pretrained_weights"):
        from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
        from nnunet_anatomask.checkpoint_io import SKIPPED_IN_HANDOVER
        assert parameters(load_pretrained_weights) == ["network", "fname", "verbose"]
        assert SKIPPED_IN_HANDOVER == (".seg_layers.",)

        def network(seg_outputs: int) -> nn.Module:
            net = nn.Module()
            net.encoder = nn.Conv2d(1, 4, 3)
            net.decoder = nn.Module()
            net.decoder.seg_layers = nn.ModuleList([nn.Conv2d(4, seg_outputs, 1)])
            return net

        source, target = network(1), network(3)  # stage 1: 1 output channel; stage 2: 3 classes
        torch.save({"network_weights": source.state_dict()}, tmp_path / "w.pth")
        seg_before = target.decoder.seg_layers[0].weight.clone()
        with contextlib.redirect_stdout(io.StringIO()):
            load_pretrained_weights(target, str(tmp_path / "w.pth"), verbose=False)
        assert torch.equal(target.encoder.weight, source.encoder.weight)
        assert torch.equal(target.decoder.seg_layers[0].weight, seg_before)


# ==================================================================== checkpoints, compile, logger
# sha256 (first 16 hex digits) of inspect.getsource(nnUNetTrainer_warmup.load_checkpoint) in nnunetv2 2.8.1, the
# function trainers/stage2.py copies and fixes.
WARMUP_LOAD_CHECKPOINT_SHA = "cea691ab86f762d4"
KEYS_OUR_LOAD_CHECKPOINT_READS = {"network_weights", "init_args", "current_epoch", "logging", "_best_ema",
                                  "inference_allowed_mirroring_axes", "optimizer_state", "grad_scaler_state"}


def test_warmup_load_checkpoint_is_the_one_we_copied(trainer, tmp_path):
    with relied_on("warmup-load-checkpoint", "nnUNetTrainer_warmup.load_checkpoint"):
        from nnunetv2.training.nnUNetTrainer.variants.lr_schedule.nnUNetTrainer_warmup import nnUNetTrainer_warmup
        source = inspect.getsource(nnUNetTrainer_warmup.load_checkpoint)
        assert hashlib.sha256(source.encode()).hexdigest()[:16] == WARMUP_LOAD_CHECKPOINT_SHA, \
            "nnUNetTrainer_warmup.load_checkpoint changed since 2.8.1"
        trainer.save_checkpoint(str(tmp_path / "checkpoint.pth"))
        written = set(torch.load(tmp_path / "checkpoint.pth", weights_only=False))
        assert written == KEYS_OUR_LOAD_CHECKPOINT_READS | {"trainer_name"}, written


def test_save_checkpoint_writes_the_given_file_only(trainer, tmp_path):
    with relied_on("save-checkpoint", "nnUNetTrainer.save_checkpoint"):
        assert parameters(type(trainer).save_checkpoint) == ["filename"]
        trainer.save_checkpoint(str(tmp_path / "name.pth.tmp123"))
        assert os.listdir(tmp_path) == ["name.pth.tmp123"]
        trainer.disable_checkpointing = True
        try:
            trainer.save_checkpoint(str(tmp_path / "disabled.pth"))
        finally:
            trainer.disable_checkpointing = False
        assert not os.path.exists(tmp_path / "disabled.pth")


def test_do_i_compile(trainer):
    with relied_on("do-i-compile", "nnUNetTrainer._do_i_compile"):
        assert parameters(type(trainer)._do_i_compile) == []
        assert trainer._do_i_compile() is False  # never on the CPU


def test_logger_fixed_keys_and_checkpoint(trainer):
    with relied_on("logger", "nnU-Net's MetaLogger / LocalLogger"):
        from nnunetv2.training.logging.nnunet_logger import LocalLogger
        with pytest.raises(AssertionError):
            LocalLogger().log("stage1_loss", 1.0, 0)
        state = trainer.logger.get_checkpoint()
        assert {"train_losses", "lrs", "ema_fg_dice"} <= set(state)
        trainer.logger.load_checkpoint(state)


def test_logger_backends(trainer, monkeypatch, tmp_path):
    with relied_on("logger-backends", "nnU-Net's MetaLogger backends / WandbLogger"):
        from nnunetv2.training.logging import nnunet_logger
        from nnunetv2.training.logging.nnunet_logger import MetaLogger, WandbLogger
        assert parameters(MetaLogger.__init__)[:2] == ["output_folder", "resume"]
        assert parameters(WandbLogger.__init__) == ["output_folder", "resume"]
        for method, args in (("update_config", ["config"]), ("log", ["key", "value", "step"]),
                             ("log_summary", ["key", "value"])):
            assert parameters(getattr(WandbLogger, method)) == args
        assert hasattr(nnunet_logger, "wandb") and isinstance(trainer.logger, MetaLogger)
        built = []
        monkeypatch.setattr(nnunet_logger, "WandbLogger", lambda folder, resume: built.append((folder, resume)) or 1)
        monkeypatch.setenv("nnUNet_wandb_enabled", "1")
        assert MetaLogger(str(tmp_path), True).loggers == [1] and built == [(str(tmp_path), True)]
        monkeypatch.setenv("nnUNet_wandb_enabled", "0")
        assert MetaLogger(str(tmp_path), False).loggers == []


TRAINER_ATTRIBUTES = (
    "plans_manager", "configuration_manager", "configuration_name", "label_manager", "dataset_json", "fold",
    "device", "is_ddp", "local_rank", "is_cascaded", "output_folder", "output_folder_base",
    "preprocessed_dataset_folder", "preprocessed_dataset_folder_base", "my_init_kwargs", "batch_size",
    "num_input_channels", "dataset_class", "network", "optimizer", "lr_scheduler", "grad_scaler", "logger",
    "was_initialized", "current_epoch", "num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch",
    "save_every", "disable_checkpointing", "_best_ema", "inference_allowed_mirroring_axes",
    "warmup_duration_whole_net", "training_stage")
TRAINER_METHODS = ("initialize", "run_training", "print_to_log_file", "configure_optimizers", "get_tr_and_val_datasets",
                   "get_dataloaders", "train_step", "_get_deep_supervision_scales", "save_checkpoint",
                   "load_checkpoint", "perform_actual_validation")
CONFIGURATION_ATTRIBUTES = ("patch_size", "network_arch_class_name", "network_arch_init_kwargs",
                            "network_arch_init_kwargs_req_import", "normalization_schemes", "configuration",
                            "data_identifier", "previous_stage_name", "batch_size")


def test_trainer_attributes(trainer):
    with relied_on("trainer-attributes", "nnUNetTrainer attributes"):
        missing = [a for a in TRAINER_ATTRIBUTES if not hasattr(trainer, a)]
        missing += [m for m in TRAINER_METHODS if not callable(getattr(trainer, m, None))]
        missing += [f"configuration_manager.{a}" for a in CONFIGURATION_ATTRIBUTES
                    if not hasattr(trainer.configuration_manager, a)]
        missing += [f"plans_manager.{a}" for a in ("plans_name", "dataset_name",
                                                   "foreground_intensity_properties_per_channel")
                    if not hasattr(trainer.plans_manager, a)]
        assert not missing, f"missing: {missing}"
        assert parameters(trainer.configure_optimizers) == ["stage"]


# ==================================================================== network building and data loading
def test_build_network_architecture(trainer):
    with relied_on("build-network-architecture", "nnUNetTrainer.build_network_architecture"):
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        assert isinstance(inspect.getattr_static(nnUNetTrainer, "build_network_architecture"), staticmethod)
        assert parameters(nnUNetTrainer.build_network_architecture) == [
            "plans_manager", "configuration_manager", "num_input_channels", "num_output_channels",
            "enable_deep_supervision"]
        network = nnUNetTrainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager,
                                                           2, 2, False)
        patch = trainer.configuration_manager.patch_size
        assert network(torch.zeros(1, 2, *patch)).shape == (1, 2, *patch)


def test_initial_patch_size(trainer):
    with relied_on("initial-patch-size", "configure_rotation_dummyDA_mirroring_and_inital_patch_size / "
                                         "get_patch_size"):
        from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
        assert parameters(get_patch_size) == ["final_patch_size", "rot_x", "rot_y", "rot_z", "scale_range"]
        rotation, dummy_2d, initial, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        patch = list(trainer.configuration_manager.patch_size)
        assert dummy_2d is False and tuple(mirror_axes) == (0, 1, 2) and len(rotation) == 2
        assert list(initial) == list(get_patch_size(patch, rotation, rotation, rotation, (0.85, 1.25)))
        assert all(i >= p for i, p in zip(initial, patch))
        larger = get_patch_size([2 * p for p in patch], rotation, rotation, rotation, (0.85, 1.25))
        assert all(big >= 2 * i - 1 for big, i in zip(larger, initial))


def test_dataset_class(folders, synthetic):
    with relied_on("dataset-class", "infer_dataset_class / get_identifiers / unpack_dataset"):
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
        plans, _ = synthetic
        folder = folders / "preprocessed" / plans["dataset_name"] / plans["configurations"]["3d_fullres"][
            "data_identifier"]
        dataset_class = infer_dataset_class(str(folder))
        assert parameters(dataset_class.get_identifiers) == ["folder"]
        assert parameters(dataset_class.unpack_dataset) == ["folder", "overwrite_existing", "num_processes", "verify"]


def test_data_loader(monkeypatch):
    with relied_on("data-loader", "nnUNetDataLoader / get_allowed_n_proc_DA"):
        from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
        from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
        assert parameters(nnUNetDataLoader.__init__) == [
            "data", "batch_size", "patch_size", "final_patch_size", "label_manager", "oversample_foreground_percent",
            "sampling_probabilities", "pad_sides", "probabilistic_oversampling", "transforms"]
        monkeypatch.setenv("nnUNet_n_proc_DA", "0")
        assert get_allowed_n_proc_DA() == 0


def test_augmenter_finish():
    with relied_on("augmenter-finish", "NonDetMultiThreadedAugmenter._finish"):
        from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
        from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
        assert parameters(NonDetMultiThreadedAugmenter._finish) == ["timeout", "force"]
        inspect.signature(NonDetMultiThreadedAugmenter).bind(None, None, num_processes=2, num_cached=6, seeds=None,
                                                             pin_memory=False, wait_time=0.002)
        assert parameters(SingleThreadedAugmenter.__init__) == ["data_loader", "transform"]


def test_bgv2_transforms():
    with relied_on("bgv2-transforms", "batchgeneratorsv2 transforms (RemoveLabelTransform, SpatialTransform, ...)"):
        from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
        from batchgeneratorsv2.transforms.intensity.contrast import BGContrast
        from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
        from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
        from batchgeneratorsv2.transforms.utils.random import RandomTransform
        from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTransform
        inspect.signature(SpatialTransform).bind(
            (8, 8), patch_center_dist_from_border=0, random_crop=False, p_elastic_deform=0, p_rotation=0.2,
            rotation=(-0.5, 0.5), p_scaling=0.2, scaling=(0.7, 1.4), p_synchronize_scaling_across_axes=1,
            bg_style_seg_sampling=False, border_mode_seg="constant", padding_value_seg=-1)
        inspect.signature(MultiplicativeBrightnessTransform).bind(
            multiplier_range=BGContrast((0.75, 1.25)), synchronize_channels=False, p_per_channel=1)
        inspect.signature(RandomTransform).bind(MirrorTransform(allowed_axes=(0, 1)), apply_probability=0.15)
        segmentation = torch.tensor([[[-1, 0], [1, -1]]], dtype=torch.int16)
        out = RemoveLabelTransform(-1, 0)(image=torch.zeros(1, 2, 2), segmentation=segmentation.clone())
        assert out["segmentation"].tolist() == [[[0, 0], [1, 0]]]


def test_env_paths_read_at_use_time(monkeypatch, tmp_path):
    with relied_on("env-paths", "nnunetv2.paths read at use time"):
        from nnunetv2 import paths
        monkeypatch.setenv("nnUNet_results", str(tmp_path))
        assert os.fspath(paths.nnUNet_results) == str(tmp_path)
        monkeypatch.delenv("nnUNet_results")
        assert not paths.nnUNet_results.is_set()


def test_cli_thread_settings():
    """Source-level: the settings happen inside run_training_entry, after argument parsing, before training."""
    with relied_on("cli-threads", "nnUNetv2_train's thread settings"):
        from nnunetv2.run.run_training import run_training_entry
        source = inspect.getsource(run_training_entry)
        for line in ("torch.set_num_threads(multiprocessing.cpu_count())", "torch.set_num_threads(1)",
                     "torch.set_num_interop_threads(1)"):
            assert line in source, line


# ==================================================================== dynamic-network-architectures
def test_encoder_attributes():
    with relied_on("encoder-attributes", "dna encoder .stages / .output_channels / .strides / .return_skips"):
        for name, network in small_unets().items():
            encoder = network.encoder
            assert isinstance(encoder.stages, nn.Sequential) and encoder.return_skips, name
            assert list(encoder.output_channels) == [4, 8, 16], name
            assert [list(s) for s in encoder.strides] == [[1, 1], [2, 2], [2, 2]], name
            assert hasattr(encoder, "stem") or name == "PlainConvUNet"
            skips = encoder(torch.zeros(1, 1, 16, 16))
            total = 1
            for skip, channels, stride in zip(skips, encoder.output_channels, encoder.strides):
                total *= stride[0]
                assert tuple(skip.shape) == (1, channels, 16 // total, 16 // total), name


def test_conv_blocks():
    with relied_on("conv-blocks", "dna ConvDropoutNormReLU .conv / .norm / .all_modules and block classes"):
        from dynamic_network_architectures.building_blocks.regularization import DropPath, SqueezeExcite  # noqa
        from dynamic_network_architectures.building_blocks.residual import (  # noqa: F401
            BasicBlockD, BottleneckD, StackedResidualBlocks)
        from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU
        for name, network in small_unets().items():
            blocks = [m for m in network.encoder.modules() if isinstance(m, ConvDropoutNormReLU)]
            assert blocks, name
            for block in blocks:
                held = list(block.all_modules)
                assert any(m is block.conv for m in held) and any(m is block.norm for m in held), name
                assert isinstance(block.norm, nn.InstanceNorm2d), name
        assert any(isinstance(m, BasicBlockD) for m in small_unets()["ResidualEncoderUNet"].encoder.modules())


def decoder_loop(decoder: nn.Module, skips: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """UNetDecoder.forward as dna 0.4.4 runs it (deep supervision off), also returning every stage's features."""
    features, below = [], skips[-1]
    for s in range(len(decoder.stages)):
        below = decoder.stages[s](torch.cat((decoder.transpconvs[s](below), skips[-(s + 2)]), 1))
        features.append(below)
    return decoder.seg_layers[-1](below), features


def test_unet_decoder_loop():
    with relied_on("unet-decoder", "dna UNetDecoder .stages / .transpconvs / .seg_layers and its forward loop"):
        for name, network in small_unets().items():
            decoder = network.decoder
            assert not decoder.deep_supervision and decoder.num_classes == 2, name
            assert len(decoder.stages) == len(decoder.transpconvs) == len(decoder.seg_layers) == 2, name
            skips = network.encoder(torch.randn(1, 1, 16, 16))
            with torch.no_grad():
                output, features = decoder_loop(decoder, skips)
                assert torch.equal(output, decoder(skips)), f"{name}: the decoder's forward is no longer this loop"
            assert [f.shape[1] for f in features] == [8, 4], name


def test_primus():
    with relied_on("primus", "nnUNet_Primus_*_Trainer / dna Primus"):
        from dynamic_network_architectures.architectures.primus import Primus
        from nnunetv2.training.nnUNetTrainer.primus import primus_trainers
        from nnunetv2.training.nnUNetTrainer.variants.lr_schedule.nnUNetTrainer_warmup import nnUNetTrainer_warmup
        for size in "SBML":
            cls = getattr(primus_trainers, f"nnUNet_Primus_{size}_Trainer")
            assert issubclass(cls, nnUNetTrainer_warmup)
            assert isinstance(inspect.getattr_static(cls, "build_network_architecture"), staticmethod)
            assert parameters(cls.build_network_architecture)[:4] == [
                "plans_manager", "configuration_manager", "num_input_channels", "num_output_channels"]
        assert parameters(Primus.__init__)[:7] == ["input_channels", "embed_dim", "patch_embed_size", "num_classes",
                                                   "eva_depth", "eva_numheads", "input_shape"]


def test_dna_network_keys_and_primus_presets():
    with relied_on("dna-network-keys", "dna key_to_encoder / key_to_stem / keys_to_in_proj / key_to_lpe, PrimusS-L"):
        from dynamic_network_architectures.architectures import primus
        from nnunetv2.training.nnUNetTrainer.primus import primus_trainers
        from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
        assert parameters(get_network_from_plans) == ["arch_class_name", "arch_kwargs", "arch_kwargs_req_import",
                                                      "input_channels", "output_channels", "allow_init",
                                                      "deep_supervision"]
        expected = {"PlainConvUNet": ("encoder.stages", "encoder.stages.0"),
                    "ResidualEncoderUNet": ("encoder.stages", "encoder.stem")}
        for name, network in small_unets().items():
            assert (network.key_to_encoder, network.key_to_stem) == expected[name]
            for key in (network.key_to_encoder, network.key_to_stem, *network.keys_to_in_proj):
                network.get_submodule(key)
        with torch.device("meta"):
            for size in "SBML":
                preset = getattr(primus, f"Primus{size}")(1, 2, (8, 8, 8), (16, 16, 16))
                ours = getattr(primus_trainers, f"nnUNet_Primus_{size}_Trainer").build_network_architecture(
                    None, SimpleNamespace(patch_size=(16, 16, 16)), 1, 2)
                assert {k: v.shape for k, v in preset.state_dict().items()} == \
                    {k: v.shape for k, v in ours.state_dict().items()}
                assert (preset.key_to_encoder, preset.key_to_stem, preset.key_to_lpe) == \
                    ("eva", "down_projection", "eva.pos_embed")
                assert preset.keys_to_in_proj == ("down_projection.proj",)


def test_primus_parts_for_token_dropping():
    with relied_on("primus-parts", "dna Primus / EVA parts and timm's keep-indices helper"):
        from dynamic_network_architectures.architectures.primus import Primus
        from timm.layers import DropPath, apply_keep_indices_nlc, trunc_normal_  # noqa: F401
        torch.manual_seed(0)
        network = Primus(1, 96, (8, 8, 8), 1, eva_depth=1, eva_numheads=2, input_shape=(16, 16, 16)).eval()
        eva = network.eva
        assert network.embed_dim == 96 and network.register_tokens is None
        assert tuple(network.down_projection.proj.kernel_size) == (8, 8, 8) and callable(eva._init_weights)
        assert all(hasattr(b, "drop_path1") and hasattr(b, "drop_path2") for b in eva.blocks)
        assert eva.pos_embed.shape == (1, 8, 96) and eva.rope.get_embed().shape[0] == 8
        x = torch.randn(1, 1, 16, 16, 16)
        with torch.no_grad():
            tokens = network.down_projection(x).flatten(2).transpose(1, 2)  # b c w h d -> b (w h d) c
            reference, _ = eva(tokens)
            ours = tokens + eva.pos_embed
            rope = apply_keep_indices_nlc(ours, eva.rope.get_embed(), torch.arange(8)[None]).unsqueeze(1)
            for block in eva.blocks:
                ours = block(ours, rope=rope)
            torch.testing.assert_close(eva.norm(ours), reference, rtol=1e-5, atol=1e-5)
        widths = lambda classes: [m.out_channels for m in Primus(1, 96, (8, 8, 8), classes, eva_depth=1,  # noqa
                                                                  eva_numheads=2, input_shape=(16, 16, 16)).up_projection.modules()
                                  if isinstance(m, nn.ConvTranspose3d)]
        assert widths(1) != widths(3)  # the patch decoder's widths depend on the class count


def test_stage1_before_initialize(synthetic, folders):
    with relied_on("stage1-before-initialize", "_set_batch_size_and_oversample / dataset_class / fold folder"):
        from nnunetv2.utilities.file_path_utilities import get_output_folder
        plans, _ = synthetic
        trainer = build_trainer(synthetic, initialize=False)
        assert trainer.dataset_class is None and callable(trainer._set_batch_size_and_oversample)
        trainer._set_batch_size_and_oversample()
        assert trainer.batch_size == plans["configurations"]["3d_fullres"]["batch_size"]
        expected = get_output_folder(plans["dataset_name"], type(trainer).__name__, plans["plans_name"], "3d_fullres", 0)
        assert trainer.output_folder == expected and os.path.isdir(expected)
        trainer.initialize()
        assert trainer.training_stage == "warmup_all" and trainer.configure_optimizers("warmup_all")[0] is \
            trainer.optimizer


# ==================================================================== every imported name
def has_name(module, name: str) -> bool:
    """`from module import name` works: an attribute, or a submodule of a package."""
    return hasattr(module, name) or (hasattr(module, "__path__")
                                     and importlib.util.find_spec(f"{module.__name__}.{name}") is not None)


def test_every_imported_name_exists():
    imports = [i for i in absolute_imports() if i.top_level in RELIED_ON_PACKAGES]
    assert any(i.top_level == "nnunetv2" for i in imports)
    with relied_on("imports", "an imported name"):
        missing = []
        for imp in imports:
            try:
                module = importlib.import_module(imp.module)
                missing += [f"{imp.where}: {imp.module}.{n}" for n in imp.names if not has_name(module, n)]
            except ImportError as error:
                missing.append(f"{imp.where}: {imp.module} ({error})")
        assert not missing, "; ".join(missing)
