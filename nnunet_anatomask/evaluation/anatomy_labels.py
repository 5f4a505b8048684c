"""The anatomy dataset's labelled volumes (anatomy_dataset.py): a template image and its label map on the same grid,
by one rule on every template (``lobes``: the nearest AAL group in the brain, MNI space; ``tissue``: the most
probable ICBM152 class)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from nnunet_anatomask.evaluation.anatomy_sources import MRICRON_DIRS, MRICRON_ENV, NILEARN_FILES, SourceMissing

# AAL region-name prefixes (side suffix _L/_R removed) -> structure; label values in this order, from 1. AAL's
# limbic regions (insula, cingulum, hippocampus, parahippocampal gyrus, amygdala) are in no group (ours): thin and
# scattered, they join the nearest lobe, like the white matter; the brainstem joins the cerebellum that way.
LOBES = {
    "frontal": ("Precentral", "Frontal_", "Rolandic_Oper", "Supp_Motor_Area", "Olfactory", "Rectus",
                "Paracentral_Lobule"),
    "temporal": ("Temporal_", "Heschl", "Fusiform"),
    "parietal": ("Postcentral", "Parietal_", "SupraMarginal", "Angular", "Precuneus"),
    "occipital": ("Calcarine", "Cuneus", "Lingual", "Occipital_"),
    "central": ("Caudate", "Putamen", "Pallidum", "Thalamus"),
    "cerebellum": ("Cerebelum_", "Vermis_"),
}
TISSUE = ("grey_matter", "white_matter")
LABEL_SETS = {"lobes": tuple(LOBES), "tissue": TISSUE}
LABEL_RULES = {"lobes": "nearest AAL group in the brain mask, MNI space", "tissue": "most probable ICBM152 class"}


# --- labelled volumes (template image + label map on the same grid) ----------------------------------------
@dataclass
class Template:
    """A labelled volume: T1 brain ``image`` (float32, 0 outside the brain) and ``labels`` (uint8), numpy order
    (z, y, x), voxel ``spacing`` in mm (numpy order)."""
    name: str
    image: np.ndarray
    labels: np.ndarray
    spacing: tuple
    source: str
    label_note: str
    meta: dict = field(default_factory=dict)


def _read(path: str) -> sitk.Image:
    return sitk.ReadImage(path)


def _aal_groups(aal_txt: str) -> np.ndarray:
    """Lookup table AAL value -> structure label (0 for regions in no group)."""
    lut = np.zeros(256, dtype=np.uint8)
    with open(aal_txt) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2:
                continue
            value, name = int(parts[0]), parts[1]
            base = name[:-2] if name.endswith(("_L", "_R")) else name
            for label, prefixes in enumerate(LOBES.values(), start=1):
                if any(base == p or (p.endswith("_") and base.startswith(p)) for p in prefixes):
                    lut[value] = label
                    break
    return lut


def _crop_to_brain(image: np.ndarray, labels: np.ndarray, margin: int = 4):
    nz = np.nonzero(image > 0)
    lo = [max(int(a.min()) - margin, 0) for a in nz]
    hi = [min(int(a.max()) + margin + 1, s) for a, s in zip(nz, image.shape)]
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    return image[sl], labels[sl]


def _lobar_volumes(template_t1: sitk.Image, brain: np.ndarray, mricron_dir: str) -> np.ndarray:
    """The ``lobes`` rule on one template: every brain voxel takes the group of the nearest AAL voxel, AAL
    resampled through world (MNI) coordinates onto the template's grid."""
    aal = _read(os.path.join(mricron_dir, "aal.nii.gz"))
    aal_arr = sitk.GetArrayFromImage(sitk.Resample(aal, template_t1, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    groups = _aal_groups(os.path.join(mricron_dir, "aal.nii.txt"))[aal_arr.astype(np.int64)]
    nearest = ndimage.distance_transform_edt(groups == 0, return_distances=False, return_indices=True)
    return np.where(brain, groups[tuple(nearest)], 0).astype(np.uint8)


LOBES_NOTE = ("every voxel of the template's own brain (largest non-zero region of the skull-stripped T1) labelled "
              "with the group of the nearest AAL voxel, AAL read through MNI coordinates (the same rule on every "
              "template)")


def _brain_mask(image: np.ndarray) -> np.ndarray:
    """The template's brain: its largest connected non-zero region (Colin27's ch2bet keeps a few stray voxels
    below the cerebellum)."""
    components, n = ndimage.label(image > 0)
    if n <= 1:
        return components > 0
    return components == 1 + int(np.argmax(ndimage.sum_labels(np.ones_like(image), components, range(1, n + 1))))


def colin27_lobes(mricron_dir: str) -> Template:
    img = _read(os.path.join(mricron_dir, "ch2bet.nii.gz"))
    image = sitk.GetArrayFromImage(img).astype(np.float32)
    brain = _brain_mask(image)
    image[~brain] = 0
    labels = _lobar_volumes(img, brain, mricron_dir)
    image, labels = _crop_to_brain(image, labels)
    return Template("colin27", image, labels, tuple(reversed(img.GetSpacing())), "mricron-data: ch2bet.nii.gz",
                    LOBES_NOTE)


def _icbm152(nilearn_dir: str):
    t1 = _read(os.path.join(nilearn_dir, NILEARN_FILES["t1"]))
    image = sitk.GetArrayFromImage(t1).astype(np.float32)
    gm = sitk.GetArrayFromImage(_read(os.path.join(nilearn_dir, NILEARN_FILES["gm"]))).astype(np.float32) / 255
    wm = sitk.GetArrayFromImage(_read(os.path.join(nilearn_dir, NILEARN_FILES["wm"]))).astype(np.float32) / 255
    return t1, image, gm, wm


def icbm152_tissue(nilearn_dir: str) -> Template:
    t1, image, gm, wm = _icbm152(nilearn_dir)
    rest = np.clip(1 - gm - wm, 0, 1)
    labels = np.argmax(np.stack([rest, gm, wm]), axis=0).astype(np.uint8)  # 0 rest, 1 GM, 2 WM
    image[(gm + wm) < 0.1] = 0  # the converted template is brain only already; drop faint rim values
    image, labels = _crop_to_brain(image, labels)
    return Template("icbm152", image, labels, tuple(reversed(t1.GetSpacing())), "nilearn: " + NILEARN_FILES["t1"],
                    "most probable of grey matter, white matter, rest (ICBM152 2009 tissue maps)")


def icbm152_lobes(nilearn_dir: str, mricron_dir: str) -> Template:
    t1, image, _, _ = _icbm152(nilearn_dir)
    brain = _brain_mask(image)
    image[~brain] = 0
    labels = _lobar_volumes(t1, brain, mricron_dir)
    image, labels = _crop_to_brain(image, labels)
    return Template("icbm152", image, labels, tuple(reversed(t1.GetSpacing())), "nilearn: " + NILEARN_FILES["t1"],
                    LOBES_NOTE)


def load_templates(label_set: str, sources: dict, test_template: str = "auto") -> tuple[list, list, str]:
    """(training templates, test templates, leak statement) for ``label_set``.

    ``test_template``: 'auto' (a held-out template where the labels allow), 'same' (test on deformations of
    the training template(s)).
    """
    if label_set not in LABEL_SETS:
        raise ValueError(f"label set {label_set!r}: choose one of {sorted(LABEL_SETS)}")
    if label_set == "lobes":
        if not sources["mricron"]:
            raise SourceMissing("Label set 'lobes' needs the AAL atlas and Colin27 of mricron-data, not found in "
                                f"{MRICRON_DIRS} (or ${MRICRON_ENV}). Fix: `apt-get install mricron-data`, or use "
                                "--label-set tissue with `pip install nilearn`.")
        train = [colin27_lobes(sources["mricron"])]
        if sources["nilearn"] and test_template == "auto":
            test = [icbm152_lobes(sources["nilearn"], sources["mricron"])]
            return train, test, ("held-out template: training cases are deformations of Colin27, test cases "
                                 "deformations of MNI ICBM152 2009 (never seen in training); both labelled by "
                                 "the same rule (AAL's groups in MNI space)")
    else:
        if not sources["nilearn"]:
            raise SourceMissing("Label set 'tissue' needs nilearn's bundled ICBM152 2009 template and tissue maps. "
                                "Fix: `pip install nilearn` (it is not a dependency of this package), or use "
                                "--label-set lobes with `apt-get install mricron-data`.")
        train = [icbm152_tissue(sources["nilearn"])]
    names = "+".join(t.name for t in train)
    return train, train, (f"LEAK: training and test cases are different random deformations of the same template "
                          f"({names}), so they share anatomy; test Dice is optimistic for real new subjects")
