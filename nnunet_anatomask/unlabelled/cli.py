"""nnUNetv2_plan_and_preprocess_unlabelled -d POOL [-c CONFIGS] [-pl PLANNER] [-np N]: plan and preprocess an
image-only dataset (imagesTr, no labelsTr) with nnU-Net's own planner and preprocessor, for stage 1
(``nnUNetv2_pretrain POOL 3d_fullres all -tr ...``). Flags as nnUNetv2_plan_and_preprocess.

``-d A B C --as P [--source_weights wA wB wC]``: the sources planned as one pool P (``pool.py``).
"""
import argparse
import os

from batchgenerators.utilities.file_and_folder_operations import load_json

from nnunet_anatomask.unlabelled.fingerprint import extract_fingerprint
from nnunet_anatomask.unlabelled.pool import PoolError, build_pool
from nnunet_anatomask.unlabelled.preprocessing import UnlabelledPreprocessor

DEFAULT_NP = {"2d": 8, "3d_fullres": 4, "3d_lowres": 8}  # nnUNetv2_plan_and_preprocess's defaults


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="nnUNetv2_plan_and_preprocess_unlabelled",
                                description="Plan and preprocess an image-only dataset (no labelsTr) for stage 1.")
    p.add_argument("-d", nargs="+", type=int, required=True,
                   help="Dataset IDs of image-only datasets (each planned on its own), or with --as the sources of "
                        "one pool")
    p.add_argument("--as", dest="pool", type=int, default=None, metavar="POOL_ID",
                   help="Plan the -d datasets as one pool with this new dataset ID: images linked, channels matched "
                        "by name, one fingerprint over all sources (labels of labelled sources are ignored)")
    p.add_argument("--pool_name", default="Pool", help="Name of the --as dataset (Dataset<ID>_<name>). Default: Pool")
    p.add_argument("--source_weights", type=float, nargs="+", default=None,
                   help="With --as: one stage-1 sampling weight per source, in the order of -d (a source's share "
                        "of the draws is its weight over the sum). Default: every case drawn alike")
    p.add_argument("-c", nargs="+", default=["2d", "3d_fullres", "3d_lowres"],
                   help="Configurations to preprocess. Default: 2d 3d_fullres 3d_lowres")
    p.add_argument("-pl", default="ExperimentPlanner", help="nnU-Net experiment planner class. Default: "
                   "ExperimentPlanner (e.g. nnUNetPlannerResEncM)")
    p.add_argument("-np", type=int, nargs="+", default=None,
                   help="Processes for preprocessing: one number, or one per configuration (nnU-Net's defaults)")
    p.add_argument("-npfp", type=int, default=8, help="Processes for the fingerprint. Default: 8")
    p.add_argument("-gpu_memory_target", type=float, default=None, help="As nnUNetv2_plan_and_preprocess")
    p.add_argument("-overwrite_plans_name", default=None, help="As nnUNetv2_plan_and_preprocess")
    p.add_argument("--no_pp", action="store_true", help="Fingerprint and planning only")
    return p.parse_args(argv)


def check_image_only(raw_folder: str) -> None:
    """An nnU-Net raw dataset with images, channel names and a label dict, and no labels: else one clear error."""
    name = os.path.basename(raw_folder)
    if not os.path.isfile(os.path.join(raw_folder, "dataset.json")):
        raise PoolError(f"{raw_folder}/dataset.json not found. Fix: write an nnU-Net dataset.json (channel_names, "
                        f"labels, file_ending) for {name}, or check nnUNet_raw.")
    dataset_json = load_json(os.path.join(raw_folder, "dataset.json"))
    missing = [k for k in ("channel_names", "labels", "file_ending") if k not in dataset_json]
    if missing:
        raise PoolError(f"{name}/dataset.json has no {', '.join(missing)}. Fix: add them as for any nnU-Net dataset; "
                        f"an image-only dataset needs \"labels\": {{\"background\": 0}} only.")
    labels = os.path.join(raw_folder, "labelsTr")
    if os.path.isdir(labels) and any(f.endswith(dataset_json["file_ending"]) for f in os.listdir(labels)):
        raise PoolError(f"{name} has labels in {labels}. Fix: plan a labelled dataset with nnU-Net's own "
                        f"nnUNetv2_plan_and_preprocess; this command is for image-only datasets.")
    images = os.path.join(raw_folder, "imagesTr")
    if not os.path.isdir(images) or not os.listdir(images):
        raise PoolError(f"{name} has no images in {images}. Fix: put the cases there as <case>_0000"
                        f"{dataset_json['file_ending']} (one file per channel).")


def processes_per_configuration(configurations: list[str], np_arg) -> list[int]:
    if np_arg is None:
        return [DEFAULT_NP.get(c, 4) for c in configurations]
    if len(np_arg) == 1:
        return np_arg * len(configurations)
    if len(np_arg) != len(configurations):
        raise PoolError(f"-np has {len(np_arg)} values for {len(configurations)} configurations. Fix: give one "
                        f"number, or one per configuration.")
    return np_arg


def preprocess(dataset_id: int, plans_identifier: str, configurations: list[str], processes: list[int]) -> None:
    """nnU-Net's preprocess_dataset without its label steps (labels read per case, gt_segmentations copied)."""
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_name = convert_id_to_dataset_name(dataset_id)
    plans_manager = PlansManager(os.path.join(nnUNet_preprocessed, dataset_name, plans_identifier + ".json"))
    for configuration, n in zip(configurations, processes):
        if configuration not in plans_manager.available_configurations:
            print(f"INFO: Configuration {configuration} not found in plans {plans_identifier} of {dataset_name}. "
                  f"Skipping.")
            continue
        name = plans_manager.get_configuration(configuration).configuration.get("preprocessor_name")
        if name != "DefaultPreprocessor":
            raise PoolError(f"The plans' preprocessor for {configuration} is {name}; image-only datasets are "
                            f"preprocessed with nnU-Net's DefaultPreprocessor only. Fix: plan without "
                            f"-preprocessor_name.")
        print(f"Preprocessing {dataset_name} {configuration} (no labels)...")
        UnlabelledPreprocessor(verbose=False).run(dataset_id, configuration, plans_identifier, num_processes=n)


def plan_and_preprocess_unlabelled(dataset_id: int, configurations: list[str], planner: str = "ExperimentPlanner",
                                   processes=None, fingerprint_processes: int = 8, gpu_memory_target=None,
                                   plans_name=None, preprocess_too: bool = True) -> str:
    """Fingerprint (ours, label-free), nnU-Net's experiment planning, preprocessing; returns the plans name."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiments
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    dataset_name = convert_id_to_dataset_name(dataset_id)
    raw_folder = os.path.join(nnUNet_raw, dataset_name)
    check_image_only(raw_folder)
    processes = processes_per_configuration(configurations, processes)
    print(f"Fingerprint of {dataset_name} (image-only: intensity statistics over the nonzero mask)...")
    extract_fingerprint(raw_folder, os.path.join(nnUNet_preprocessed, dataset_name, "dataset_fingerprint.json"),
                        fingerprint_processes)
    print("Experiment planning (nnU-Net)...")
    plans_identifier = plan_experiments([dataset_id], planner, gpu_memory_target, "DefaultPreprocessor", None,
                                        plans_name)
    if preprocess_too:
        preprocess(dataset_id, plans_identifier, configurations, processes)
    return plans_identifier


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        if args.pool is not None:
            build_pool(args.d, args.pool, args.pool_name, args.source_weights)
            plan_and_preprocess_unlabelled(args.pool, args.c, args.pl, args.np, args.npfp, args.gpu_memory_target,
                                           args.overwrite_plans_name, not args.no_pp)
            return
        if args.source_weights is not None:
            raise PoolError("--source_weights needs --as (the weights are the sources' shares within one pool). "
                            "Fix: add --as POOL_ID.")
        for dataset_id in args.d:
            plan_and_preprocess_unlabelled(dataset_id, args.c, args.pl, args.np, args.npfp, args.gpu_memory_target,
                                           args.overwrite_plans_name, not args.no_pp)
    except PoolError as e:
        raise SystemExit(f"nnUNetv2_plan_and_preprocess_unlabelled: {e}") from None


if __name__ == "__main__":
    main()
