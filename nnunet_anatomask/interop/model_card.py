"""The model card (README.md) of a shared stage-1 checkpoint, generated from what the checkpoint records
(docs/interop.md): scheme and settings, budget, data, modality and normalisation, spacing and patch, plans hash,
licence, citations, and how to fine-tune it with nnunet-anatomask and with nnU-Net main."""
from __future__ import annotations

from typing import Optional

from nnunet_anatomask.interop.adaptation_plan import ADAPTATION_PLAN_KEY, CITATIONS_KEY, first_configuration

LICENCE_PLACEHOLDER = "FILL IN (the licence under which you share these weights, e.g. cc-by-4.0)"


def _front_matter(licence: Optional[str], scheme: str) -> list[str]:
    """Hugging Face's YAML header: an SPDX-like licence id when one is given, else 'other' until filled in."""
    return ["---", f"license: {licence or 'other'}", "library_name: nnunet-anatomask",
            "tags: [nnU-Net, nnssl, self-supervised, medical-imaging, " + scheme + "]", "---", ""]


def _data_lines(ckpt: dict) -> list[str]:
    init = ckpt.get("init_args") or {}
    plans, dataset_json = init.get("plans") or {}, init.get("dataset_json") or {}
    budget = ckpt.get("budget") or {}
    plan = ckpt[ADAPTATION_PLAN_KEY]
    _, entry = first_configuration(plan)
    channels = dataset_json.get("channel_names", dataset_json.get("modality", {}))
    lines = [f"- Dataset or pool: {plans.get('dataset_name', plan['pretrain_plan']['dataset_name'])}, "
             f"{budget.get('dataset_images', 'unknown')} preprocessed images; stage 1 used "
             + ("all of them" if str(budget.get("fold")) == "all" else f"fold {budget.get('fold')}'s training cases"),
             f"- Modality (channels): {', '.join(f'{k}: {v}' for k, v in channels.items()) or 'unknown'}",
             f"- Normalisation: {', '.join(entry['normalization_schemes'])}"]
    stats = plans.get("foreground_intensity_properties_per_channel") or {}
    for channel, scheme in enumerate(entry["normalization_schemes"]):
        if scheme == "CTNormalization" and str(channel) in stats:
            s = stats[str(channel)]
            lines.append(f"  - channel {channel} (CT): clipped to [{s['percentile_00_5']:.4g}, "
                         f"{s['percentile_99_5']:.4g}], mean {s['mean']:.4g}, std {s['std']:.4g}")
    lines += [f"- Spacing: {entry['spacing']}; patch size: {entry['patch_size']} "
              f"(recommended downstream: {plan['recommended_downstream_patchsize']})",
              f"- Plans: {ckpt.get('plans_name')}, configuration {ckpt.get('configuration')}, plans hash "
              f"{ckpt.get('plans_hash')}; input channels {plan['pretrain_num_input_channels']}"]
    return lines


def _finetune_lines(ckpt: dict, repo: Optional[str]) -> list[str]:
    plan = ckpt[ADAPTATION_PLAN_KEY]
    arch = plan["architecture_plans"]["arch_class_name"]
    primus = arch.startswith("Primus")
    source = f"https://huggingface.co/{repo}" if repo else "path/to/checkpoint_final.pth"
    ours = ("nnUNetv2_plan_and_preprocess -d DATASET -c 3d_fullres --no_pp   # once, if DATASET was never planned\n"
            "nnUNetv2_plan_like_pretrained -d DATASET -pc checkpoint_final.pth   # plans with this network\n"
            "nnUNetv2_preprocess -d DATASET -c 3d_fullres -plans_name nnUNetPlans_pretrained\n")
    ours += (f"nnUNetv2_export_pretrained checkpoint_final.pth -d DATASET -c 3d_fullres -p nnUNetPlans_pretrained "
             f"-tr nnUNet_Primus_{arch[-1]}_Trainer -o primus.pth\n"
             f"nnUNetv2_train DATASET 3d_fullres FOLD -p nnUNetPlans_pretrained -tr nnUNet_Primus_{arch[-1]}_Trainer "
             f"-pretrained_weights primus.pth" if primus else
             "nnUNetv2_train DATASET 3d_fullres FOLD -p nnUNetPlans_pretrained -tr nnUNetTrainerFinetune")
    trainer = "PretrainedTrainer_Primusx" if primus else "PretrainedTrainer"
    main = (f"nnUNetv2_extract_fingerprint -d DATASET && nnUNetv2_plan_experiment -d DATASET\n"
            f"nnUNetv2_preprocess_like_nnssl -d DATASET -n NAME -pc {source} -am like_pretrained\n"
            f"nnUNetv2_train_pretrained DATASET 3d_fullres FOLD -p ptPlans__NAME____<data identifier> -tr {trainer}")
    return ["## Fine-tune it", "", "With nnunet-anatomask (nnU-Net 2.8; docs/interop.md):", "", "```bash", ours,
            "```", "", "To continue pretraining it on your data with any of our schemes: "
            "`nnUNetv2_pretrain DATASET 3d_fullres all -p nnUNetPlans_pretrained -tr nnUNetTrainerAnatoMask"
            + (f"_Primus{arch[-1]}" if primus else "") + "`.", "",
            "With nnU-Net's main branch (`documentation/finetuning_from_nnssl_checkpoints.md`; it preprocesses "
            "every channel with z-score normalisation):", "", "```bash", main, "```", ""]


def model_card(ckpt: dict, licence: Optional[str] = None, repo: Optional[str] = None) -> str:
    """README.md of a shared checkpoint."""
    scheme = ckpt.get("scheme", "unknown")
    arch = ckpt[ADAPTATION_PLAN_KEY]["architecture_plans"]["arch_class_name"]
    budget = ckpt.get("budget") or {}
    settings = ckpt.get("scheme_settings") or {}
    lines = _front_matter(licence, scheme) + [
        f"# {scheme} stage-1 weights: {arch}", "",
        f"Self-supervised weights pretrained with nnunet-anatomask's `{ckpt.get('trainer_name')}` (scheme "
        f"{scheme}) on nnU-Net's own plans. The checkpoint carries nnssl's adaptation plan "
        f"(`nnssl_adaptation_plan`, also in `adaptation_plan.json`).", "",
        "## Scheme and settings", "", "| setting | value |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in settings.items()], "",
        "## Budget", "",
        f"- {ckpt.get('current_epoch', '?')} of {budget.get('epochs', '?')} epochs x "
        f"{budget.get('iterations_per_epoch', '?')} iterations, batch size {budget.get('batch_size', '?')}", ""]
    if ckpt.get("initial_weights"):
        lines += [f"- Started from {ckpt['initial_weights']['path']} "
                  f"({ckpt['initial_weights'].get('transfer', '')})", ""]
    lines += ["## Data", "", *_data_lines(ckpt), "", "## Licence", "", f"{licence or LICENCE_PLACEHOLDER}", "",
              "## Citations", "", "If you use these weights, cite:", "",
              *[f"- {item.get('name')} ({item.get('type')}): {paper}" for item in ckpt.get(CITATIONS_KEY) or []
                for paper in item.get("apa_citations") or []], "", *_finetune_lines(ckpt, repo)]
    return "\n".join(lines)
