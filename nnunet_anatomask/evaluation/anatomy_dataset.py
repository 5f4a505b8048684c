"""A real-anatomy nnU-Net raw dataset built offline from brain templates that ship in packages.

Nothing is downloaded and nothing is shipped with this package: the builder finds the templates where their
packages put them and tells you what to install when they are missing.

Sources (either or both):

* Debian ``mricron-data`` (``apt-get install mricron-data``), ``/usr/share/mricron/templates``: the Colin27 T1
  brain (``ch2bet.nii.gz``, skull-stripped, 1 mm) and the AAL atlas (``aal.nii.gz`` + ``aal.nii.txt``, 116
  regions) on the same grid.
* PyPI ``nilearn`` (``pip install nilearn``), ``<site-packages>/nilearn/datasets/data``: the MNI ICBM152 2009a
  (symmetric) T1 template, brain only, 1 mm, with grey- and white-matter probability maps. nilearn is never
  imported, only located (``importlib.util.find_spec``).

Label sets (left and right merged, because nnU-Net mirrors during training and inference):

* ``lobes`` (needs mricron-data): 6 lobar volumes, see ``LOBES``, made by one rule on every template: each
  voxel of the template's own brain (its non-zero, skull-stripped T1) takes the group of the nearest AAL voxel,
  AAL read through MNI coordinates. Colin27 and ICBM152 both live in MNI space, so the same rule labels both and
  a held-out template measures a new brain, not a new labelling method. AAL is a grey-matter atlas: the nearest-
  voxel fill extends each group into the white matter beneath it (the borders between lobes inside the white
  matter are AAL's Voronoi borders, conventional, not visible in the image).
* ``tissue`` (needs nilearn): ICBM152 grey matter and white matter (the most probable of GM, WM, rest).

Subjects: every subject is one template under a random affine + smooth elastic deformation, resampled to a
random, slightly anisotropic voxel spacing (a thick-slice axis) after anti-alias blurring, with a gamma/contrast
change, a multiplicative smooth bias field and Rician noise. The label map goes through the same deformation
(nearest neighbour).

Leak: all subjects are deformations of a few templates, so training and test share anatomy. With ``lobes`` and
both packages the test cases are deformations of ICBM152 while training uses Colin27 only (held-out template);
otherwise test cases are other deformations of the training template, and ``dataset.json`` and
``provenance.json`` say so. Run ``python -m nnunet_anatomask.evaluation.anatomy_dataset --help``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

MRICRON_DIRS = ("/usr/share/mricron/templates", "/usr/local/share/mricron/templates")
MRICRON_ENV = "nnUNet_anatomask_mricron_dir"  # optional override: a folder holding ch2bet.nii.gz, aal.nii.gz
NILEARN_FILES = {k: f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}
INSTALL_HINT = ("Install one of them (nothing is downloaded at run time): `apt-get install mricron-data` "
                "(Debian/Ubuntu: Colin27 + AAL, label set 'lobes') and/or `pip install nilearn` (or `pip install -e '.[evaluation]'`; MNI ICBM152 "
                "2009 T1 + tissue maps inside the wheel, label set 'tissue'; with both, 'lobes' is tested on "
                "a held-out template).")

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


class SourceMissing(RuntimeError):
    """No (or not enough) template data is installed for the requested label set; the message says what to do."""


# --- finding the data --------------------------------------------------------------------------------------
def find_mricron_dir(explicit: Optional[str] = None) -> Optional[str]:
    """The mricron-data templates folder (with ch2bet.nii.gz, aal.nii.gz, aal.nii.txt), or None."""
    candidates = [explicit] if explicit else [os.environ.get(MRICRON_ENV), *MRICRON_DIRS]
    for d in candidates:
        if d and all(os.path.isfile(os.path.join(d, f)) for f in ("ch2bet.nii.gz", "aal.nii.gz", "aal.nii.txt")):
            return d
    if explicit:
        raise SourceMissing(f"{explicit!r} does not hold ch2bet.nii.gz, aal.nii.gz and aal.nii.txt (mricron-data).")
    return None


def find_nilearn_dir(explicit: Optional[str] = None) -> Optional[str]:
    """nilearn's bundled data folder with the ICBM152 2009 T1/GM/WM files, or None. nilearn is not imported."""
    if explicit:
        candidates = [explicit]
    else:
        try:
            spec = importlib.util.find_spec("nilearn")
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            return None
        candidates = [os.path.join(p, "datasets", "data") for p in spec.submodule_search_locations]
    for d in candidates:
        if all(os.path.isfile(os.path.join(d, f)) for f in NILEARN_FILES.values()):
            return d
    if explicit:
        raise SourceMissing(f"{explicit!r} does not hold {sorted(NILEARN_FILES.values())} (nilearn's data).")
    return None


def available_sources(mricron_dir: Optional[str] = None, nilearn_dir: Optional[str] = None) -> dict:
    """{'mricron': dir or None, 'nilearn': dir or None}."""
    return {"mricron": find_mricron_dir(mricron_dir), "nilearn": find_nilearn_dir(nilearn_dir)}


def default_label_set(sources: dict) -> str:
    if sources["mricron"]:
        return "lobes"
    if sources["nilearn"]:
        return "tissue"
    raise SourceMissing("No brain template found: neither mricron-data (/usr/share/mricron/templates) nor nilearn "
                        "is installed. " + INSTALL_HINT)


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


# --- subject generator ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Augment:
    """Ranges of the random subject transforms (all uniform)."""
    rotation_deg: float = 8.0           # per axis
    scale: tuple = (0.9, 1.1)           # per axis
    translation_mm: float = 4.0         # per axis
    elastic_mm: float = 3.0             # std of each displacement component at the control points
    elastic_grid_mm: float = 24.0       # control point spacing
    thick_slice: tuple = (1.0, 1.5)     # one random axis: spacing x this
    spacing_jitter: float = 0.05        # other axes: spacing x U(1 - j, 1 + j)
    gamma: tuple = (0.7, 1.4)
    bias_log_std: float = 0.2           # multiplicative bias exp(N(0, s)) at coarse control points
    noise: tuple = (0.01, 0.05)         # Rician noise std, fraction of the brain's 99th percentile


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    r = np.eye(3)
    for axis in range(3):
        a = np.deg2rad(rng.uniform(-max_deg, max_deg))
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != axis]
        m = np.eye(3)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        r = r @ m
    return r


def _smooth_field(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float], grid_mm: float,
                  std: float, n: int = 1) -> np.ndarray:
    """``n`` smooth random fields of ``shape``: N(0, std) at control points every ``grid_mm``, cubic upsampling."""
    coarse = [max(2, int(round(s * sp / grid_mm)) + 2) for s, sp in zip(shape, spacing)]
    out = np.empty((n, *shape), dtype=np.float32)
    for k in range(n):
        c = rng.normal(0.0, std, coarse)
        out[k] = ndimage.zoom(c, [s / cs for s, cs in zip(shape, coarse)], order=3, mode="nearest",
                              grid_mode=True)[tuple(slice(0, s) for s in shape)]
    return out


def make_subject(template: Template, spacing: float, rng: np.random.Generator, aug: Augment = Augment()):
    """One random subject: (image float32, labels uint8, spacing tuple), numpy order (z, y, x)."""
    src_sp = np.asarray(template.spacing, dtype=np.float64)
    out_sp = np.full(3, float(spacing)) * rng.uniform(1 - aug.spacing_jitter, 1 + aug.spacing_jitter, 3)
    thick = int(rng.integers(3))
    out_sp[thick] = spacing * rng.uniform(*aug.thick_slice)
    extent = np.asarray(template.image.shape) * src_sp
    out_shape = np.maximum(np.ceil(extent / out_sp).astype(int), 8)
    # output voxel -> mm around the centre -> affine + elastic -> template voxel
    a = _rotation(rng, aug.rotation_deg) @ np.diag(rng.uniform(*aug.scale, 3))
    t = rng.uniform(-aug.translation_mm, aug.translation_mm, 3)
    grid = np.stack(np.meshgrid(*[(np.arange(n) + 0.5) * s - n * s / 2 for n, s in zip(out_shape, out_sp)],
                                indexing="ij")).reshape(3, -1)
    disp = _smooth_field(rng, out_shape, out_sp, aug.elastic_grid_mm, aug.elastic_mm, 3).reshape(3, -1)
    src_mm = a @ grid + t[:, None] + disp + (extent / 2)[:, None]
    coords = (src_mm / src_sp[:, None] - 0.5).reshape(3, *out_shape)
    # anti-alias: blur the template by the output/template spacing ratio before sampling
    sigma = np.maximum(out_sp / src_sp - 1.0, 0.0) * 0.5
    img = ndimage.gaussian_filter(template.image, sigma) if sigma.any() else template.image
    image = ndimage.map_coordinates(img, coords, order=1, mode="constant", cval=0.0).astype(np.float32)
    labels = ndimage.map_coordinates(template.labels, coords, order=0, mode="constant", cval=0).astype(np.uint8)
    # intensities: [0, 1] by the brain's 99th percentile, gamma, smooth bias, Rician noise, then 0..1000
    ref = float(np.percentile(template.image[template.image > 0], 99))
    x = np.clip(image / ref, 0, None) ** rng.uniform(*aug.gamma)
    x *= np.exp(_smooth_field(rng, out_shape, out_sp, 60.0, aug.bias_log_std)[0])
    sd = rng.uniform(*aug.noise)
    x = np.sqrt((x + rng.normal(0, sd, x.shape)) ** 2 + rng.normal(0, sd, x.shape) ** 2)
    return (1000.0 * x).astype(np.float32), labels, tuple(float(s) for s in out_sp)


# --- nnU-Net raw writer ----------------------------------------------------------------------------------------
def _write(array: np.ndarray, path: str, spacing: Sequence[float]) -> None:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in reversed(spacing)))
    sitk.WriteImage(img, path, useCompression=True)


def dataset_folder(raw_root: str, dataset_id: int, name: str) -> str:
    return os.path.join(raw_root, f"Dataset{dataset_id:03d}_{name}")


def build_anatomy_dataset(raw_root: str, dataset_id: int = 981, name: str = "BrainAnatomy", num_train: int = 40,
                          num_test: int = 20, spacing: float = 2.0, label_set: Optional[str] = None,
                          test_template: str = "auto", seed: int = 0, mricron_dir: Optional[str] = None,
                          nilearn_dir: Optional[str] = None, log=print, channel_name: str = "T1") -> str:
    """Write the nnU-Net raw dataset and return its folder. Resumable: existing case files are kept, and a
    folder built with other settings is refused (``provenance.json`` records them)."""
    sources = available_sources(mricron_dir, nilearn_dir)
    label_set = label_set or default_label_set(sources)
    folder = dataset_folder(raw_root, dataset_id, name)
    settings = {"label_set": label_set, "label_rule": LABEL_RULES[label_set], "num_train": num_train,
                "num_test": num_test, "spacing": spacing,
                "test_template": test_template, "seed": seed, "augment": vars(Augment())}
    prov_path = os.path.join(folder, "provenance.json")
    if os.path.isfile(prov_path):
        with open(prov_path) as f:
            old = json.load(f)
        if old.get("settings") != json.loads(json.dumps(settings)):
            raise RuntimeError(f"{folder} was built with other settings ({old.get('settings')}); use another "
                               f"output folder or delete it.")
        if old.get("complete"):
            return folder
    train_t, test_t, leak = load_templates(label_set, sources, test_template)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    names = LABEL_SETS[label_set]
    provenance = {"settings": settings, "complete": False, "sources": {k: v for k, v in sources.items()},
                  "templates": {"train": [t.name for t in train_t], "test": [t.name for t in test_t]},
                  "label_notes": {t.name: t.label_note for t in {id(t): t for t in train_t + test_t}.values()},
                  "labels": {"background": 0, **{n: i for i, n in enumerate(names, start=1)}},
                  "leak": leak, "cases": {}}
    if label_set == "lobes":
        provenance["lobes_aal_prefixes"] = {k: list(v) for k, v in LOBES.items()}
    with open(prov_path, "w") as f:
        json.dump(provenance, f, indent=2)
    log(f"building {num_train} training + {num_test} test subjects ({label_set}; {leak})")
    for i in range(num_train + num_test):
        split = "Tr" if i < num_train else "Ts"
        templates = train_t if split == "Tr" else test_t
        template = templates[i % len(templates)]
        case = f"brain_{i:03d}"
        img_path = os.path.join(folder, f"images{split}", f"{case}_0000.nii.gz")
        lab_path = os.path.join(folder, f"labels{split}", f"{case}.nii.gz")
        provenance["cases"][case] = {"split": split, "template": template.name}
        if os.path.isfile(img_path) and os.path.isfile(lab_path):
            continue
        image, labels, sp = make_subject(template, spacing, np.random.default_rng([seed, i]))
        _write(labels, lab_path + ".tmp.nii.gz", sp)
        _write(image, img_path + ".tmp.nii.gz", sp)
        os.replace(lab_path + ".tmp.nii.gz", lab_path)
        os.replace(img_path + ".tmp.nii.gz", img_path)
        log(f"  {case} ({split}, {template.name}) shape {image.shape} spacing {tuple(round(s, 2) for s in sp)}")
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump({"name": name, "channel_names": {"0": channel_name}, "labels": provenance["labels"],
                   "numTraining": num_train, "file_ending": ".nii.gz",
                   "description": f"Random deformations of brain templates (label set {label_set}). {leak}.",
                   "reference": "built by nnunet_anatomask.evaluation.anatomy_dataset from "
                                + ", ".join(k for k, v in sources.items() if v)}, f, indent=2)
    provenance["complete"] = True
    with open(prov_path, "w") as f:
        json.dump(provenance, f, indent=2)
    return folder


def main(argv: Optional[Sequence[str]] = None) -> str:
    p = argparse.ArgumentParser(description="Build the real-anatomy nnU-Net raw dataset from installed brain "
                                            "templates (mricron-data and/or nilearn). " + INSTALL_HINT)
    p.add_argument("--raw", default=os.environ.get("nnUNet_raw"), help="nnUNet_raw folder (default $nnUNet_raw)")
    p.add_argument("--id", type=int, default=981)
    p.add_argument("--name", default="BrainAnatomy")
    p.add_argument("--num-train", type=int, default=40)
    p.add_argument("--num-test", type=int, default=20)
    p.add_argument("--spacing", type=float, default=2.0, help="base voxel spacing in mm (default 2)")
    p.add_argument("--label-set", choices=sorted(LABEL_SETS), default=None,
                   help="default: lobes when mricron-data is installed, else tissue")
    p.add_argument("--test-template", choices=("auto", "same"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mricron-dir", default=None)
    p.add_argument("--nilearn-dir", default=None)
    p.add_argument("--list-sources", action="store_true", help="print which sources are found and exit")
    a = p.parse_args(argv)
    if a.list_sources:
        src = available_sources(a.mricron_dir, a.nilearn_dir)
        for k, v in src.items():
            print(f"{k}: {v or 'not found'}")
        if not any(src.values()):
            print(INSTALL_HINT)
        return ""
    if not a.raw:
        p.error("--raw is required when $nnUNet_raw is not set")
    try:
        folder = build_anatomy_dataset(a.raw, a.id, a.name, a.num_train, a.num_test, a.spacing, a.label_set,
                                       a.test_template, a.seed, a.mricron_dir, a.nilearn_dir)
    except SourceMissing as e:
        raise SystemExit(f"anatomy_dataset: {e}")
    print(f"wrote {folder}")
    return folder


if __name__ == "__main__":
    main()
