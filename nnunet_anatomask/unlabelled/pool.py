"""Several source datasets as one unlabelled pool: ``nnUNetv2_plan_and_preprocess_unlabelled -d 601 602 603 --as
610`` (docs/pools_and_ddp.md).

The pool is an nnU-Net raw dataset of its own, ``Dataset610_<name>``, whose ``imagesTr`` holds links to the
sources' image files (nothing is copied): case ``<case>`` of Dataset601 becomes ``D601_<case>``. Everything after
that is the one-dataset path: one fingerprint over every source's cases, nnU-Net's planner, preprocessing.

* Channels are mapped by name (the modality in ``channel_names``, compared case-insensitively): the pool takes
  the first source's channel names and order; a source that names its channels in another order is re-linked
  in the pool's order. A source whose channel names differ is refused with a message naming it.
* Labels of a labelled source are ignored: only its images go into the pool (they never reach stage 1).
* ``dataset.json`` of the pool records every source (``pool_sources``: its case prefix, number of cases and
  optional sampling weight); nnU-Net copies it to the preprocessed folder, where stage 1 reads the weights
  (``trainers/stage1_sampling.py``).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from batchgenerators.utilities.file_and_folder_operations import load_json

from nnunet_anatomask.errors import PluginError

POOL_SOURCES = "pool_sources"  # the key in the pool's dataset.json


class PoolError(PluginError, RuntimeError):
    """A raw dataset this command cannot plan; the message names the problem and the fix."""


@dataclass(frozen=True)
class Source:
    dataset: str                      # DatasetXXX_Name
    prefix: str                       # the pool's case ids of this source start with it
    images: dict                      # case -> the source's image files, one per channel in the pool's order
    weight: Optional[float] = None    # stage-1 sampling weight of the whole source (None: by case count)
    labelled: bool = False            # the source has labels (ignored)


def case_prefix(dataset_id: int) -> str:
    return f"D{dataset_id:03d}_"


def channel_names(dataset_json: dict) -> list[str]:
    names = dataset_json["channel_names"]
    return [str(names[k]) for k in sorted(names, key=int)]


def channel_order(pool_names: Sequence[str], source_names: Sequence[str], source: str) -> list[int]:
    """For each pool channel, the index of the source channel with the same name (case-insensitive)."""
    wanted = [n.strip().lower() for n in pool_names]
    have = [n.strip().lower() for n in source_names]
    if sorted(wanted) != sorted(have) or len(set(have)) != len(have):
        raise PoolError(f"{source} has channels {list(source_names)}, the pool {list(pool_names)} (from the first "
                        f"source): channels are matched by name. Fix: leave {source} out, or rename its channels in "
                        f"its dataset.json (channel_names) if they are the same modalities under other names.")
    return [have.index(n) for n in wanted]


def read_source(raw_root: str, dataset_id: int) -> tuple[str, dict, dict]:
    """(folder name, dataset.json, {case: image files in the source's channel order}) of one source."""
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    try:
        name = convert_id_to_dataset_name(dataset_id)
    except RuntimeError as e:
        raise PoolError(f"source dataset {dataset_id}: {e} Fix: check -d and nnUNet_raw.") from None
    folder = os.path.join(raw_root, name)
    if not os.path.isfile(os.path.join(folder, "dataset.json")):
        raise PoolError(f"{folder}/dataset.json not found. Fix: write an nnU-Net dataset.json for {name}, or check "
                        f"nnUNet_raw.")
    dataset_json = load_json(os.path.join(folder, "dataset.json"))
    missing = [k for k in ("channel_names", "file_ending") if k not in dataset_json]
    if missing:
        raise PoolError(f"{name}/dataset.json has no {', '.join(missing)}. Fix: add them as for any nnU-Net dataset.")
    cases = {case: entry["images"] for case, entry in
             get_filenames_of_train_images_and_targets(folder, dataset_json).items()}
    if not cases:
        raise PoolError(f"{name} has no images in {folder}/imagesTr. Fix: put its cases there as <case>_0000"
                        f"{dataset_json['file_ending']}, or leave it out of -d.")
    return name, dataset_json, cases


def check_weights(weights: Optional[Sequence[float]], sources: Sequence[int]) -> None:
    if weights is None:
        return
    if len(weights) != len(sources):
        raise PoolError(f"--source_weights has {len(weights)} values for {len(sources)} sources (-d). Fix: give one "
                        f"weight per source, in the order of -d.")
    bad = [w for w in weights if not (math.isfinite(w) and w > 0)]
    if bad:
        raise PoolError(f"--source_weights {bad}: every weight must be a positive number. Fix: leave a source out of "
                        f"-d instead of weighting it 0.")


def collect_sources(raw_root: str, source_ids: Sequence[int],
                    weights: Optional[Sequence[float]] = None) -> tuple[list[Source], dict]:
    """Every source with its images in the pool's channel order, and the pool's dataset.json (without cases)."""
    if len(set(source_ids)) != len(source_ids):
        raise PoolError(f"-d {' '.join(map(str, source_ids))} names a source twice. Fix: name each once (use "
                        f"--source_weights to sample one more often).")
    check_weights(weights, source_ids)
    sources, first = [], None
    for i, dataset_id in enumerate(source_ids):
        name, dataset_json, cases = read_source(raw_root, dataset_id)
        if first is None:
            first = {"channel_names": dataset_json["channel_names"], "file_ending": dataset_json["file_ending"],
                     "first": name}
        if dataset_json["file_ending"] != first["file_ending"]:
            raise PoolError(f"{name} stores {dataset_json['file_ending']} files, {first['first']} "
                            f"{first['file_ending']}: a pool has one file ending (nnU-Net reads it from dataset.json)."
                            f" Fix: convert {name}'s images to {first['file_ending']}, or leave it out.")
        order = channel_order(channel_names(first), channel_names(dataset_json), name)
        labels = os.path.join(raw_root, name, "labelsTr")
        sources.append(Source(name, case_prefix(dataset_id), {c: [files[j] for j in order] for c, files in
                                                               cases.items()},
                              None if weights is None else float(weights[i]),
                              os.path.isdir(labels) and bool(os.listdir(labels))))
    return sources, {"channel_names": first["channel_names"], "file_ending": first["file_ending"]}


def shares(sources: Sequence[Source]) -> list[tuple[str, int, float, float]]:
    """(dataset, cases, share of the cases, share of stage-1 draws) per source: without weights every case is
    drawn alike, so a source's draws follow its case count; with weights a source's share is its weight over the
    sum (ours)."""
    total = sum(len(s.images) for s in sources)
    weighted = all(s.weight is not None for s in sources)
    weight_sum = sum(s.weight for s in sources) if weighted else 0.0
    return [(s.dataset, len(s.images), len(s.images) / total,
             s.weight / weight_sum if weighted else len(s.images) / total) for s in sources]


def share_lines(sources: Sequence[Source]) -> list[str]:
    lines = []
    for s, (name, n, case_share, draw_share) in zip(sources, shares(sources)):
        weight = f"weight {s.weight:g}" if s.weight is not None else "no weight"
        labels = "; its labels are ignored" if s.labelled else ""
        lines.append(f"  {name}: {n} cases ({100 * case_share:.1f} % of the pool), {100 * draw_share:.1f} % of "
                     f"stage-1 draws ({weight}), case ids {s.prefix}*{labels}")
    return lines


def pool_folder(raw_root: str, pool_id: int, pool_name: str) -> str:
    """The pool's raw folder: an existing Dataset<pool_id>_* that is one of our pools, else a new one."""
    prefix = f"Dataset{pool_id:03d}_"
    existing = [d for d in os.listdir(raw_root) if d.startswith(prefix)] if os.path.isdir(raw_root) else []
    if not existing:
        return os.path.join(raw_root, prefix + pool_name)
    folder = os.path.join(raw_root, existing[0])
    dataset_json = os.path.join(folder, "dataset.json")
    if len(existing) > 1 or not os.path.isfile(dataset_json) or POOL_SOURCES not in load_json(dataset_json):
        raise PoolError(f"{folder} exists and is not a pool made by --as. Fix: choose a free dataset id for --as.")
    return folder


def _link(target: str, link: str) -> None:
    """A symbolic link ``link`` -> ``target``, replacing an older link (sources may have moved)."""
    if os.path.lexists(link):
        if os.path.islink(link) and os.readlink(link) == target:
            return
        os.remove(link)
    os.symlink(target, link)


def write_pool(raw_root: str, pool_id: int, pool_name: str, sources: Sequence[Source], pool_json: dict) -> str:
    """The pool's raw dataset: imagesTr links to every source image, dataset.json with ``pool_sources``."""
    folder = pool_folder(raw_root, pool_id, pool_name)
    images = os.path.join(folder, "imagesTr")
    os.makedirs(images, exist_ok=True)
    ending, wanted = pool_json["file_ending"], set()
    for s in sources:
        for case, files in s.images.items():
            for k, path in enumerate(files):
                link = f"{s.prefix}{case}_{k:04d}{ending}"
                wanted.add(link)
                _link(os.path.abspath(path), os.path.join(images, link))
    for stale in set(os.listdir(images)) - wanted:  # a source dropped or changed since the last build
        os.remove(os.path.join(images, stale))
    dataset_json = {
        "name": os.path.basename(folder), "channel_names": pool_json["channel_names"],
        "labels": {"background": 0}, "numTraining": sum(len(s.images) for s in sources), "file_ending": ending,
        "description": "Unlabelled pool of " + ", ".join(s.dataset for s in sources)
                       + " (nnUNetv2_plan_and_preprocess_unlabelled --as; images are links to the sources)",
        POOL_SOURCES: {s.dataset: {"prefix": s.prefix, "cases": len(s.images), "weight": s.weight,
                                   "labels_ignored": s.labelled} for s in sources}}
    tmp = os.path.join(folder, "dataset.json.tmp")
    with open(tmp, "w") as f:
        json.dump(dataset_json, f, indent=2)
    os.replace(tmp, os.path.join(folder, "dataset.json"))
    return folder


def build_pool(source_ids: Sequence[int], pool_id: int, pool_name: str = "Pool",
               weights: Optional[Sequence[float]] = None, log: Callable[[str], None] = print) -> str:
    """Check every source, write the pool's raw dataset and log each source's share; returns its folder."""
    from nnunetv2.paths import nnUNet_raw

    if pool_id in source_ids:
        raise PoolError(f"--as {pool_id} is also a source (-d). Fix: choose a new dataset id for the pool.")
    sources, pool_json = collect_sources(nnUNet_raw, source_ids, weights)
    folder = write_pool(nnUNet_raw, pool_id, pool_name, sources, pool_json)
    log(f"Pool {os.path.basename(folder)}: {sum(len(s.images) for s in sources)} cases from {len(sources)} sources, "
        f"channels {channel_names(pool_json)} (matched by name)")
    for line in share_lines(sources):
        log(line)
    return folder
