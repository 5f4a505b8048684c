"""The dataset fingerprint of an image-only dataset, without label-derived statistics.

nnU-Net's DatasetFingerprintExtractor samples intensities from the label foreground (``seg > 0``) and crashes on a
dataset without labels. Here every case is read and cropped exactly as nnU-Net does (its reader, crop_to_nonzero)
and the intensities are sampled, with nnU-Net's own sampler, from the voxels inside nnU-Net's nonzero mask
instead of the label foreground (ours). Spacings, shapes after cropping and the relative size after cropping are
label-free in nnU-Net too and computed the same way. The statistics only matter where nnU-Net normalises with them:
CTNormalization clips to their 0.5/99.5 percentiles and z-scores with their mean/std; for CT the nonzero mask is
usually the whole field of view (air is -1000, not 0), so the window is much wider than a labelled dataset's.
"""
import multiprocessing
import os

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import load_json, save_json
from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

from nnunet_anatomask.unlabelled.checks import check_channel_files, check_finite

INTENSITY_REGION = "nonzero mask (image-only dataset, no labels; nnunet-anatomask)"
SAMPLED_VOXELS = 10e7  # nnU-Net's num_foreground_voxels_for_intensitystats, spread over the cases


def analyse_case(image_files: list[str], reader_writer_class, num_samples: int) -> tuple:
    """Shape after cropping, spacing, sampled intensities per channel, relative size after cropping (nnU-Net's
    analyze_case, with the nonzero mask in place of the label foreground)."""
    images, properties = reader_writer_class().read_images(image_files)
    check_finite(images, image_files)  # before anything is written: the fingerprint is saved after all cases
    cropped, nonzero_seg, _ = crop_to_nonzero(images)  # nonzero_seg: 0 inside the nonzero mask, -1 outside
    inside = (nonzero_seg == 0).astype(np.int8)
    samples, _ = DatasetFingerprintExtractor.collect_foreground_intensities(inside, cropped, num_samples=num_samples)
    relative_size = np.prod(cropped.shape[1:]) / np.prod(images.shape[1:])
    return cropped.shape[1:], properties["spacing"], samples, relative_size


def intensity_properties(samples: np.ndarray) -> dict:
    """nnU-Net's per-channel intensity statistics (the keys CTNormalization reads) of the sampled voxels."""
    percentile_00_5, median, percentile_99_5 = np.percentile(samples, (0.5, 50.0, 99.5))
    return {"mean": float(np.mean(samples)), "median": float(median), "std": float(np.std(samples)),
            "min": float(np.min(samples)), "max": float(np.max(samples)),
            "percentile_99_5": float(percentile_99_5), "percentile_00_5": float(percentile_00_5)}


def extract_fingerprint(raw_folder: str, output_file: str, num_processes: int) -> dict:
    """Write and return the fingerprint of the image-only raw dataset in ``raw_folder``."""
    dataset_json = load_json(os.path.join(raw_folder, "dataset.json"))
    cases = get_filenames_of_train_images_and_targets(raw_folder, dataset_json)  # label paths are not read
    check_channel_files(cases, dataset_json["channel_names"], dataset_json["file_ending"])
    images = [case["images"] for case in cases.values()]
    reader_writer = determine_reader_writer_from_dataset_json(dataset_json, images[0][0])
    per_case = int(SAMPLED_VOXELS // len(images))
    with multiprocessing.get_context("spawn").Pool(num_processes) as pool:
        results = pool.starmap(analyse_case, [(files, reader_writer, per_case) for files in images])
    samples = [np.concatenate([r[2][c] for r in results]) for c in range(len(dataset_json["channel_names"]))]
    fingerprint = {
        "spacings": [r[1] for r in results],
        "shapes_after_crop": [r[0] for r in results],
        "foreground_intensity_properties_per_channel": {c: intensity_properties(s) for c, s in enumerate(samples)},
        "median_relative_size_after_cropping": np.median([r[3] for r in results], 0),
        "intensity_statistics_region": INTENSITY_REGION,
    }
    os.makedirs(os.path.dirname(output_file), exist_ok=True)
    save_json(fingerprint, output_file)
    return fingerprint
