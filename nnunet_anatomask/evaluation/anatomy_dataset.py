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

Modules: anatomy_sources.py (finding the templates), anatomy_labels.py (template + label map), anatomy_synthesis.py
(subjects), this one (the nnU-Net raw dataset and the command line).
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from nnunet_anatomask.evaluation.anatomy_labels import LABEL_RULES, LABEL_SETS, LOBES, load_templates
from nnunet_anatomask.evaluation.anatomy_sources import INSTALL_HINT, SourceMissing, available_sources, \
    default_label_set
from nnunet_anatomask.evaluation.anatomy_synthesis import Augment, make_subject

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
