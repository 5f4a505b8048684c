"""Stage-1 batches: nnU-Net's own dataset, data loader and augmenters, with stage-1 augmentation.

Ours: spatial (nnU-Net's rotation/scaling), mirroring and mild multiplicative brightness only. Noise, blur,
gamma and low-resolution simulation are left out because they would corrupt the reconstruction target.
No foreground oversampling: labels never influence which patches stage 1 sees. Which cases a process draws
from, and how often (DDP shards, pool source weights): ``stage1_sampling.py``. A scheme may ask for crops larger
than the plans' patch (``crop_scale``, e.g. GL-MAE's global views), at the plans' spacing; it cuts and resizes
its views itself, on the device (docs/architecture.md).
"""
from typing import Optional

import torch
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
from batchgeneratorsv2.transforms.intensity.contrast import BGContrast
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform, Convert3DTo2DTransform
from batchgeneratorsv2.transforms.utils.random import RandomTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTransform
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA

from nnunet_anatomask.trainers.stage1_sampling import stage1_cases


def stage1_transforms(patch_size, rotation, mirror_axes, do_dummy_2d: bool) -> ComposeTransforms:
    """Spatial + mirror + mild intensity scaling, with nnU-Net's parameters for the kept transforms."""
    spatial_size = patch_size[1:] if do_dummy_2d else patch_size
    transforms = [Convert3DTo2DTransform()] if do_dummy_2d else []
    transforms.append(SpatialTransform(
        spatial_size, patch_center_dist_from_border=0, random_crop=False, p_elastic_deform=0,
        p_rotation=0.2, rotation=rotation, p_scaling=0.2, scaling=(0.7, 1.4),
        p_synchronize_scaling_across_axes=1, bg_style_seg_sampling=False, border_mode_seg="constant",
        padding_value_seg=-1))
    if do_dummy_2d:
        transforms.append(Convert2DTo3DTransform())
    transforms.append(RandomTransform(MultiplicativeBrightnessTransform(
        multiplier_range=BGContrast((0.75, 1.25)), synchronize_channels=False, p_per_channel=1),
        apply_probability=0.15))
    if mirror_axes:
        transforms.append(MirrorTransform(allowed_axes=mirror_axes))
    transforms.append(RemoveLabelTransform(-1, 0))
    return ComposeTransforms(transforms)


def crop_size(patch_size, crop_scale: float) -> tuple[int, ...]:
    """The loader's crop: the plans' patch scaled per axis and rounded (the patch itself at scale 1)."""
    if crop_scale < 1:
        raise ValueError(f"crop_scale must be >= 1 (crops at least the plans' patch), got {crop_scale}")
    return tuple(int(round(p * crop_scale)) for p in patch_size)


def initial_crop_size(crop, rotation, do_dummy_2d: bool) -> list[int]:
    """nnU-Net's rule for the crop taken before rotation/scaling (nnUNetTrainer.configure_rotation_dummyDA_
    mirroring_and_inital_patch_size), applied to a crop of another size."""
    size = get_patch_size(crop, rotation, rotation, rotation, (0.85, 1.25))
    if do_dummy_2d:
        size[0] = crop[0]
    return [int(v) for v in size]


def stage1_batches(trainer, crop_scale: float = 1.0, device: Optional[torch.device] = None):
    """An endless iterator of stage-1 batches over the fold's training cases (this rank's shard under DDP, drawn
    with the pool's source weights if it has them), built from the trainer's plans: crops of the plans' patch x
    ``crop_scale``, pinned for a CUDA ``device`` (default: the trainer's)."""
    rotation, do_dummy_2d, initial_patch_size, mirror_axes = \
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    crop = crop_size(trainer.configuration_manager.patch_size, crop_scale)
    if crop_scale != 1:
        initial_patch_size = initial_crop_size(crop, rotation, do_dummy_2d)
    cases, probabilities, _ = stage1_cases(trainer)
    previous_stage = trainer.folder_with_segs_from_previous_stage  # nnU-Net's cascade, as get_tr_and_val_datasets
    dataset_tr = trainer.dataset_class(trainer.preprocessed_dataset_folder, cases,
                                       folder_with_segs_from_previous_stage=previous_stage)
    loader = nnUNetDataLoader(dataset_tr, trainer.batch_size, initial_patch_size, crop,
                              trainer.label_manager, oversample_foreground_percent=0.0,
                              sampling_probabilities=probabilities, pad_sides=None,
                              transforms=stage1_transforms(crop, rotation, mirror_axes, do_dummy_2d))
    n_proc = get_allowed_n_proc_DA()
    if n_proc == 0:
        return SingleThreadedAugmenter(loader, None)
    return NonDetMultiThreadedAugmenter(loader, None, num_processes=n_proc, num_cached=max(6, n_proc // 2),
                                        seeds=None, pin_memory=(device or trainer.device).type == "cuda", wait_time=0.002)


def shutdown(batches) -> None:
    """Stop background augmentation workers, if any."""
    if isinstance(batches, NonDetMultiThreadedAugmenter):
        batches._finish()
