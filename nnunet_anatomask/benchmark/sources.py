"""Where the benchmark's plans, trainer and batch come from: named synthetic sizes in memory, or a preprocessed
dataset; nnU-Net's own trainer built as nnUNetv2_train builds it, in a scratch nnUNet_results."""
import contextlib
import gc
import io
import os
import tempfile
from dataclasses import dataclass

import torch
from batchgenerators.utilities.file_and_folder_operations import join, load_json
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import empty_cache

from nnunet_anatomask.trainers.stage1_data import shutdown


@dataclass(frozen=True)
class Size:
    patch: tuple[int, ...]
    features: tuple[int, ...]
    batch: int = 2


SIZES = {  # 3D PlainConvUNet, strides 1, 2, 2, ..., two convs per stage, instance norm (nnU-Net's default)
    "tiny": Size((32, 32, 32), (8, 16, 32, 64)),  # CI: a fraction of a second a step on a CPU
    "small": Size((64, 64, 64), (16, 32, 64, 128, 256)),  # seconds a step on a CPU
    "h100": Size((128, 128, 128), (32, 64, 128, 256, 320, 320)),  # the H100 reference
}
SYNTHETIC_DATASET = "Dataset999_BenchmarkSynthetic"


def synthetic_plans(size: str) -> tuple[dict, dict]:
    """An nnU-Net plans dict (one 3d_fullres configuration) and dataset.json for a named size, in memory."""
    s, n = SIZES[size], len(SIZES[size].features)
    arch_kwargs = {
        "n_stages": n, "features_per_stage": list(s.features), "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * n, "strides": [[1, 1, 1]] + [[2, 2, 2]] * (n - 1),
        "n_conv_per_stage": [2] * n, "n_conv_per_stage_decoder": [2] * (n - 1), "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True}}
    config = {"data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
              "batch_size": s.batch, "patch_size": list(s.patch), "spacing": [1.0] * 3,
              "median_image_size_in_voxels": [2.0 * p for p in s.patch],
              "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False], "batch_dice": False,
              "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                               "arch_kwargs": arch_kwargs,
                               "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}
    plans = {"dataset_name": SYNTHETIC_DATASET, "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
             "original_median_spacing_after_transp": [1.0] * 3, "transpose_forward": [0, 1, 2],
             "original_median_shape_after_transp": [2 * p for p in s.patch], "transpose_backward": [0, 1, 2],
             "configurations": {"3d_fullres": config}, "experiment_planner_used": "ExperimentPlanner",
             "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {}}
    dataset_json = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "foreground": 1},
                    "numTraining": 0, "file_ending": ".nii.gz"}
    return plans, dataset_json


def dataset_plans(dataset: str, plans_name: str) -> tuple[dict, dict]:
    """Plans and dataset.json of a preprocessed dataset (nnUNet_preprocessed must be set)."""
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    folder = join(str(nnUNet_preprocessed), maybe_convert_to_dataset_name(dataset))
    return load_json(join(folder, plans_name + ".json")), load_json(join(folder, "dataset.json"))


@contextlib.contextmanager
def scratch_env(synthetic_config: dict = None):
    """nnUNet_results -> a temporary folder (trainer logs land there); for synthetic plans also a stand-in
    nnUNet_preprocessed holding one empty .b2nd file, so that nnUNetTrainer.initialize() can infer a dataset class."""
    saved = {k: os.environ.get(k) for k in ("nnUNet_results", "nnUNet_preprocessed")}
    with tempfile.TemporaryDirectory(prefix="anatomask_benchmark_") as tmp:
        os.environ["nnUNet_results"] = join(tmp, "results")
        if synthetic_config is not None:
            os.environ["nnUNet_preprocessed"] = join(tmp, "preprocessed")
            data = join(tmp, "preprocessed", SYNTHETIC_DATASET, synthetic_config["data_identifier"])
            os.makedirs(data)
            open(join(data, "stand_in.b2nd"), "w").close()
        try:
            yield
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def make_trainer(plans: dict, dataset_json: dict, configuration: str, fold, device: torch.device,
                 trainer_class: type = nnUNetTrainer) -> nnUNetTrainer:
    """nnU-Net's own trainer (nnUNetTrainer, or a Primus trainer), built and initialised as nnUNetv2_train does
    (its chatter swallowed)."""
    plans = {**plans, "continue_training": False}
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = trainer_class(plans=plans, configuration=configuration, fold=fold, dataset_json=dataset_json,
                                device=device)
        trainer.initialize()
    return trainer


def synthetic_batch(trainer: nnUNetTrainer) -> dict:
    """Random image [B, C, *patch] and int16 deep-supervision targets, as nnU-Net's loader hands them over."""
    patch, b = trainer.configuration_manager.patch_size, trainer.batch_size
    data = torch.randn(b, trainer.num_input_channels, *patch)
    labels = trainer.label_manager.num_segmentation_heads
    scales = trainer._get_deep_supervision_scales() or [[1] * len(patch)]  # None without deep supervision (Primus)
    target = [torch.randint(0, labels, (b, 1, *[round(p * s) for p, s in zip(patch, scale)]), dtype=torch.int16)
              for scale in scales]
    return {"data": data, "target": target if trainer.enable_deep_supervision else target[0]}


def first_batch(trainer: nnUNetTrainer) -> dict:
    """One batch of nnU-Net's own training data loader (real data, nnU-Net's augmentation)."""
    loader_tr, loader_val = trainer.get_dataloaders()
    try:
        return next(loader_tr)
    finally:
        shutdown(loader_tr)
        shutdown(loader_val)


def release(trainer: nnUNetTrainer) -> None:
    """Drop the trainer's network, optimiser and loss (initialize() builds them again)."""
    trainer.network = trainer.optimizer = trainer.lr_scheduler = trainer.loss = None
    trainer.was_initialized = False
    if hasattr(trainer, "training_stage"):  # nnUNetTrainer_warmup (Primus) keeps its optimiser per stage
        trainer.training_stage = None
    gc.collect()
    empty_cache(trainer.device)
