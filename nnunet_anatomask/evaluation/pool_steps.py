"""The data and plan steps of a pool size (``--size cpu-pool``), through the user-facing commands of
docs/pools_and_ddp.md: the pool's sources, ``nnUNetv2_plan_and_preprocess_unlabelled -d SOURCES --as POOL``, the
pool's plans capped as every CPU size's (``plans.py``), ``nnUNetv2_move_plans_between_datasets`` to the labelled
dataset and ``nnUNetv2_preprocess`` of it with them. Stage 1 then runs on the pool and stage 2 is
``nnUNetTrainerFinetune -pretrained_weights`` on the labelled dataset (``pipeline.Run.launch``)."""
from __future__ import annotations

import json
import os

from nnunet_anatomask.evaluation.plans import write_capped_plans


def provenance_file(run) -> str:
    return os.path.join(run.layout.raw, f"pool_{run.size.pool_id}_provenance.json")


def source_ids(run) -> list[int]:
    with open(provenance_file(run)) as f:
        return [s["dataset_id"] for s in json.load(f)["sources"].values()]


def build_pool_data(run) -> None:
    """Every pool source found offline (``pool_dataset.py``), as image-only raw datasets; a synthetic size: two
    generated sources (``example_data``)."""
    s = run.size
    if s.data == "synthetic":
        write_synthetic_sources(run)
        return
    from nnunet_anatomask.evaluation.pool_dataset import build_pool_sources
    build_pool_sources(run.layout.raw, s.pool_id, s.pool_cases, s.spacing, s.channel_name,
                       log=lambda m: run.log("  " + m))


def write_synthetic_sources(run) -> None:
    """Two image-only sources of generated ellipsoids (other seeds than the labelled set), in the provenance
    format of ``pool_dataset.build_pool_sources``."""
    from nnunet_anatomask.evaluation.pool_dataset import cases_per_source
    from nnunet_anatomask.example_data import make_example_dataset
    s, sources = run.size, {}
    for index, n in enumerate(cases_per_source(s.pool_cases, 2)):
        dataset_id = s.pool_id + 1 + index
        folder = make_example_dataset(run.layout.raw, dataset_id, f"PoolSynthetic{index}", num_train=n, num_test=0,
                                      shape=(12, 32, 32), images_only=True, seed=100 + index)
        sources[f"synthetic_{index}"] = {"dataset_id": dataset_id, "dataset": os.path.basename(folder), "cases": n,
                                         "note": "generated ellipsoids (example_data)"}
    with open(provenance_file(run), "w") as f:
        json.dump({"settings": {"total_cases": s.pool_cases}, "complete": True, "sources": sources, "missing": {}},
                  f, indent=2)


def pool_data_done(run) -> bool:
    if not os.path.isfile(provenance_file(run)):
        return False
    with open(provenance_file(run)) as f:
        return bool(json.load(f).get("complete"))


def _preprocessed(folder: str, plans_file: str, configuration: str, cases: int) -> bool:
    """Whether ``cases`` preprocessed cases exist for the plans' data of ``configuration``."""
    if not os.path.isfile(plans_file):
        return False
    with open(plans_file) as f:
        ident = json.load(f)["configurations"][configuration]["data_identifier"]
    data = os.path.join(folder, ident)
    return os.path.isdir(data) and sum(f.endswith(".pkl") for f in os.listdir(data)) >= cases


def plan_done(run) -> bool:
    lay, s = run.layout, run.size
    pool_folder = os.path.join(lay.preprocessed, s.pool_dataset)
    return (_preprocessed(pool_folder, os.path.join(pool_folder, s.plans_name + ".json"), s.configuration,
                          s.pool_cases)
            and _preprocessed(lay.pre_dataset, lay.plans_file(), s.configuration, len(run.train_cases())))


def plan(run) -> float:
    """Plan and preprocess the pool, cap its plans, move them to the labelled dataset, preprocess that; returns the
    commands' CPU seconds."""
    s, lay = run.size, run.layout
    processes = 1 if run.device == "cpu" else 4
    cpu = run.nnunet("plan_pool", ["nnUNetv2_plan_and_preprocess_unlabelled", "-d", *source_ids(run), "--as",
                                   s.pool_id, "--pool_name", s.pool_name, "-c", s.configuration, "-np", processes,
                                   "-npfp", processes], training=False)
    if s.plans_name != "nnUNetPlans":
        pool_folder = os.path.join(lay.preprocessed, s.pool_dataset)
        write_capped_plans(os.path.join(pool_folder, "nnUNetPlans.json"),
                           os.path.join(pool_folder, s.plans_name + ".json"), s.configuration, s.plans_name,
                           s.max_features, s.max_batch_size)
    # the labelled dataset, planned once as any nnU-Net dataset (nnU-Net's move and preprocess need its folder)
    cpu += run.nnunet("plan_labelled", ["nnUNetv2_plan_and_preprocess", "-d", s.dataset_id, "-c", s.configuration,
                                        "--no_pp", "-npfp", processes], training=False)
    cpu += run.nnunet("move_plans", ["nnUNetv2_move_plans_between_datasets", "-s", s.pool_id, "-t", s.dataset_id,
                                     "-sp", s.plans_name, "-tp", s.plans_name], training=False)
    cpu += run.nnunet("preprocess_labelled", ["nnUNetv2_preprocess", "-d", s.dataset_id, "-c", s.configuration,
                                              "-plans_name", s.plans_name, "-np", processes], training=False)
    return cpu
