"""What a stage-1 checkpoint pretrained on another dataset (a pool) must share with the run that fine-tunes from it
(docs/pools_and_ddp.md): the same channels, the same plans, and for CT the same normalisation statistics.

Our stage-1 checkpoints carry the pool's plans and dataset.json (``init_args``, as nnU-Net's checkpoints do), so
each difference is named with both values and the fix, before any training. Checkpoints of other origin (nnU-Net's
own) are left to the weight-shape check.
"""
import json

from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_anatomask.checkpoint_io import CheckpointError, plain

# Configuration entries that may differ (ours): the folder name of the preprocessed data (nnUNetv2_move_plans_
# between_datasets renames it with -tp), the batch size (stage 2's optimisation only) and the median image size
# (a planning input that neither preprocessing nor the network uses).
IGNORED_CONFIGURATION_KEYS = ("data_identifier", "batch_size", "median_image_size_in_voxels")
CT_STATISTICS = ("mean", "std", "percentile_00_5", "percentile_99_5")  # what nnU-Net's CTNormalization reads


def _same(a, b) -> bool:
    return json.dumps(plain(a), sort_keys=True) == json.dumps(plain(b), sort_keys=True)


def _fix(pool: str, target: str, plans_name: str, configuration: str) -> str:
    return (f"Fix: copy the pool's plans to the target and preprocess it with them: "
            f"nnUNetv2_move_plans_between_datasets -s {pool} -t {target} -sp {plans_name} -tp {plans_name}; "
            f"nnUNetv2_preprocess -d {target} -c {configuration} -plans_name {plans_name}; then train with "
            f"-p {plans_name}.")


def channel_names(dataset_json: dict) -> list[str]:
    names = dataset_json.get("channel_names", dataset_json.get("modality", {}))
    return [str(names[k]) for k in sorted(names, key=int)]


def check_channels(pool_json: dict, target_json: dict, pool: str, target: str) -> None:
    """The same channels in the same order (dataset.json channel_names, compared case-insensitively)."""
    ours, theirs = channel_names(pool_json), channel_names(target_json)
    if [n.lower() for n in ours] != [n.lower() for n in theirs]:
        raise CheckpointError(
            f"The stage-1 checkpoint was pretrained on {pool} with channels {ours}, but {target} has channels "
            f"{theirs}: its weights expect other inputs. Fix: pretrain on a pool with the target's channels in the "
            f"target's order (dataset.json channel_names), or rename a channel if it is the same modality under "
            f"another name.")


def plan_differences(pool_plans: dict, target_plans: dict, configuration: str) -> list[str]:
    """'key: pool value vs target value' for every entry of the configuration (and transpose) that differs."""
    ours = PlansManager(pool_plans).get_configuration(configuration).configuration
    theirs = PlansManager(target_plans).get_configuration(configuration).configuration
    differences = [f"{key}: {plain(ours.get(key))} vs {plain(theirs.get(key))}"
                   for key in sorted(set(ours) | set(theirs))
                   if key not in IGNORED_CONFIGURATION_KEYS and not _same(ours.get(key), theirs.get(key))]
    if not _same(pool_plans.get("transpose_forward"), target_plans.get("transpose_forward")):
        differences.append(f"transpose_forward: {pool_plans.get('transpose_forward')} vs "
                           f"{target_plans.get('transpose_forward')}")
    return differences


def ct_differences(pool_plans: dict, target_plans: dict, configuration: str) -> list[str]:
    """CT channels whose normalisation statistics (nnU-Net's CTNormalization: clip to the 0.5/99.5 percentiles,
    subtract the mean, divide by the std) differ between the two plans."""
    schemes = PlansManager(target_plans).get_configuration(configuration).normalization_schemes
    ours = pool_plans.get("foreground_intensity_properties_per_channel", {})
    theirs = target_plans.get("foreground_intensity_properties_per_channel", {})
    differences = []
    for channel, scheme in enumerate(schemes):
        if scheme != "CTNormalization":
            continue
        a, b = ours.get(str(channel), {}), theirs.get(str(channel), {})
        if any(not _same(a.get(k), b.get(k)) for k in CT_STATISTICS):
            differences.append(f"channel {channel}: {_ct_text(a)} vs {_ct_text(b)}")
    return differences


def _ct_text(stats: dict) -> str:
    return (f"clip [{stats.get('percentile_00_5', float('nan')):.4g}, {stats.get('percentile_99_5', float('nan')):.4g}]"
            f", mean {stats.get('mean', float('nan')):.4g}, std {stats.get('std', float('nan')):.4g}")


def check_transfer(ckpt: dict, target_plans: dict, target_json: dict, configuration: str, source: str) -> None:
    """Channels, plans and CT normalisation of a stage-1 checkpoint against this run; one clear error each."""
    init_args = ckpt.get("init_args") or {}
    pool_plans, pool_json = init_args.get("plans"), init_args.get("dataset_json")
    if "scheme" not in ckpt or not isinstance(pool_plans, dict) or not isinstance(pool_json, dict):
        return
    pool, target = pool_plans.get("dataset_name", "the pool"), target_plans.get("dataset_name", "this dataset")
    check_channels(pool_json, target_json, pool, target)
    if configuration not in pool_plans.get("configurations", {}):
        return  # the configuration check (checkpoint_io.check_same) names this
    fix = _fix(pool, target, pool_plans.get("plans_name", "nnUNetPlans"), configuration)
    differences = plan_differences(pool_plans, target_plans, configuration)
    if differences:
        raise CheckpointError(
            f"{source} was pretrained with the plans of {pool}, and {target} is planned differently (pool vs "
            f"target): {'; '.join(differences)}. Stage-1 weights transfer only between identical plans. {fix}")
    differences = ct_differences(pool_plans, target_plans, configuration)
    if differences:
        raise CheckpointError(
            f"{source}: stage 1 normalised CT intensities with the statistics in {pool}'s plans, this run uses "
            f"other ones (pool vs target): {'; '.join(differences)}. The same HU would reach the network as "
            f"different inputs in the two stages. {fix}")


def check_same_plans(ckpt: dict, target_plans: dict, configuration: str, plans_hash: str, source: str) -> None:
    """A stage-1 checkpoint of this dataset whose plans hash differs: name the differing entries (before
    checkpoint_io.check_same reports the hashes)."""
    pool_plans = (ckpt.get("init_args") or {}).get("plans")
    if ckpt.get("plans_hash") in (None, plans_hash) or not isinstance(pool_plans, dict) or \
            configuration not in pool_plans.get("configurations", {}):
        return
    differences = plan_differences(pool_plans, target_plans, configuration)
    if differences:
        raise CheckpointError(
            f"{source} was pretrained with other plans than this run's (checkpoint vs this run): "
            f"{'; '.join(differences)}. Fix: train with the plans it was pretrained with (-p), or delete/move it so "
            f"that stage 1 runs again with the current plans.")
