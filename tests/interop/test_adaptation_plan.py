"""Ours out (interop/adaptation_plan.py): every stage-1 checkpoint carries nnssl's adaptation plan, in the checkpoint
and as adaptation_plan.json beside it, read the way nnU-Net main's nnUNetv2_preprocess_like_nnssl reads it; a
network built from the plan alone holds the checkpoint's weights tensor for tensor (CNN and Primus)."""
import json
import os

import pytest
import torch

from nnunet_anatomask.interop.adaptation_plan import PLAN_FIELDS
from nnunet_anatomask.interop.architectures import build
from nnunet_anatomask.interop.citations import NNUNET, SCHEME_PAPERS
from nnunet_anatomask.pretraining.schemes import SCHEMES
from nnunet_anatomask.trainers.registry import SCHEME_TRAINERS
from tests.trainers.helpers import make_trainer


def saved_stage1(planned, trainer_name: str, monkeypatch, tmp_path) -> tuple[str, object]:
    """A stage-1 checkpoint written by the runner's own save() right after build (no step needed)."""
    trainer = make_trainer(planned, SCHEME_TRAINERS[trainer_name], monkeypatch, tmp_path)
    runner = trainer.stage1
    runner.build()
    os.makedirs(runner.folder, exist_ok=True)
    runner.save(runner.final_checkpoint)
    return runner.final_checkpoint, trainer


def nnunet_main_reads(path: str) -> tuple[dict, dict]:
    """What nnU-Net main's preprocess_like_nnssl reads, without fallbacks: torch.load(weights_only=True), the plan,
    key_to_lpe by [], and the first entry of pretrain_plan.configurations."""
    ckpt = torch.load(path, weights_only=True, map_location="cpu")
    plan = ckpt["nnssl_adaptation_plan"]
    plan["key_to_lpe"]  # noqa: B018 - read as nnU-Net main reads it (a KeyError if absent)
    return plan, list(plan["pretrain_plan"]["configurations"].values())[0]


@pytest.mark.parametrize("trainer_name, lpe", [("nnUNetTrainerRandomMask", None),
                                               ("nnUNetTrainerRandomMask_PrimusS", "eva.pos_embed")])
def test_plan_as_nnunet_main_reads_it_and_the_network_it_builds(demo3d, monkeypatch, tmp_path, trainer_name, lpe):
    """Pins each read of nnU-Net main: weights_only load, key_to_lpe (None for a CNN), the first configuration's
    spacing and patch_size (the plans'); the same plan as adaptation_plan.json beside the checkpoint; and the round
    trip: the network built from the plan alone (nnU-Net main's builders: dynamic kwargs or the Primus preset)
    loads the checkpoint's network_weights strictly, every tensor equal.
    Mutations caught: key_to_lpe left out, configurations as a bare entry instead of {name: entry}, the plans'
    spacing not written, a Primus described as another preset."""
    path, trainer = saved_stage1(demo3d, trainer_name, monkeypatch, tmp_path)
    plan, entry = nnunet_main_reads(path)
    config = trainer.configuration_manager
    assert plan["key_to_lpe"] == lpe
    assert entry["spacing"] == list(config.spacing) and entry["patch_size"] == list(config.patch_size)
    assert set(PLAN_FIELDS) == set(plan)
    with open(os.path.join(os.path.dirname(path), "adaptation_plan.json")) as f:
        assert json.load(f) == plan
    weights = torch.load(path, weights_only=True)["network_weights"]
    with torch.device("meta"):  # structure from the plan alone; the tensors are the checkpoint's
        network = build(plan["architecture_plans"], plan["pretrain_num_input_channels"],
                        plan["pretrain_num_input_channels"], plan["recommended_downstream_patchsize"])
    network.load_state_dict(weights, strict=True, assign=True)
    for key, tensor in network.state_dict().items():
        assert torch.equal(tensor, weights[key]), key
    for key in ("key_to_encoder", "key_to_stem"):
        assert any(k.startswith(plan[key] + ".") for k in weights)
    assert all(f"{k}.weight" in weights for k in plan["keys_to_in_proj"])


def test_cnn_plan_is_nnssl_dynamic_plan_and_pretrain_plan_has_nnssl_fields(demo3d, monkeypatch, tmp_path):
    """The CNN maps onto nnssl's dynamic PlainConvUNet plan (the plans' kwargs), the pretrain plan has exactly
    nnssl's Plan and ConfigurationPlan fields (nnssl's from_dict refuses others)."""
    path, trainer = saved_stage1(demo3d, "nnUNetTrainerRandomMask", monkeypatch, tmp_path)
    plan, entry = nnunet_main_reads(path)
    arch = plan["architecture_plans"]
    assert arch["arch_class_name"] == "PlainConvUNet"
    assert arch["arch_kwargs"] == trainer.configuration_manager.network_arch_init_kwargs
    assert set(plan["pretrain_plan"]) == {"dataset_name", "plans_name", "original_median_spacing_after_transp",
                                          "image_reader_writer", "transpose_forward", "transpose_backward",
                                          "configurations", "experiment_planner_used"}
    assert set(entry) == {"data_identifier", "preprocessor_name", "spacing_style", "normalization_schemes",
                          "use_mask_for_norm", "resampling_fn_data", "resampling_fn_data_kwargs", "resampling_fn_mask",
                          "resampling_fn_mask_kwargs", "spacing", "patch_size"}
    assert list(plan["pretrain_plan"]["configurations"]) == ["3d_fullres"]


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_scheme_cites_nnunet_and_its_paper(demo3d, monkeypatch, tmp_path, scheme):
    """Every scheme's checkpoint carries the plan, and citations naming nnU-Net and the scheme's paper (a scheme
    without an entry in citations.SCHEME_PAPERS fails here); its settings and budget for the model card."""
    path, _ = saved_stage1(demo3d, f"nnUNetTrainer{scheme}", monkeypatch, tmp_path)
    ckpt = torch.load(path, weights_only=True)
    assert "nnssl_adaptation_plan" in ckpt
    papers = [paper for item in ckpt["citations"] for paper in item["apa_citations"]]
    assert NNUNET in papers and SCHEME_PAPERS[scheme] in papers
    assert ckpt["scheme_settings"]["mask_ratio"] == SCHEMES[scheme].config_class().mask_ratio
    assert ckpt["budget"]["dataset_images"] == 5 and ckpt["budget"]["fold"] == 0
