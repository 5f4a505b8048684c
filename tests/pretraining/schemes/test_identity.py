"""Every scheme's losses, figures, masks and end state are those recorded from the code before the seams refactor
(tests/data/scheme_identity.json, written by tests/data/record_scheme_identity.py on main 3bc7a9c, which holds
issue 22's difficulty spaces and stage-1 recipes), on both backbones, to 1e-6: three optimiser steps through the
real Stage1Loop on fixed seeds, by the backbone's recipe, one torch thread. AMLP's cases with MPS were re-recorded
from the code (tests/data/rerecord_scheme_identity.py) when MPS began to draw its background by lesion-likeness;
AMLP_random_background keeps the old record, so the rest of AMLP's step is still pinned to the old code."""
import json
import os

import pytest
import torch

from nnunet_anatomask.pretraining.backbones import backbone_for
from nnunet_anatomask.pretraining.backbones.primus import set_stochastic_depth
from nnunet_anatomask.pretraining.recipes import NNSSL_EVA_MAE
from nnunet_anatomask.pretraining.schemes import SCHEMES
from nnunet_anatomask.pretraining.schemes.masked_modelling import with_recipe_ratio
from nnunet_anatomask.pretraining.schemes.settings import scheme_config
from nnunet_anatomask.trainers.stage1_loop import Stage1Loop
from tests.pretraining.backbones.test_primus import PATCH as PRIMUS_PATCH, tiny_primus
from tests.data.record_scheme_identity import CASES, EPOCHS, NO_DROP_PATH  # the recorder's cases, one list
from tests.pretraining.schemes.conftest import tiny_model

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "scheme_identity.json")


@pytest.fixture(scope="module")
def recorded() -> dict:
    with open(DATA) as f:
        return json.load(f)


def masked_model(backbone: str):
    """(masked model, patch, the backbone's recipe given the scheme's own)."""
    torch.manual_seed(0)
    if backbone == "cnn":
        return tiny_model(), (16, 16, 16), lambda own: own
    network = tiny_primus()
    primus = backbone_for(network, PRIMUS_PATCH)
    return primus.masked_model(network, NNSSL_EVA_MAE), PRIMUS_PATCH, primus.recipe


def replay(case: str, backbone: str) -> dict:
    """As the runner builds stage 1: settings, the backbone's recipe, its mask ratio where the paper fixes none."""
    name, settings = CASES[case]
    model, patch, recipe_of = masked_model(backbone)
    if backbone == "primus" and case in NO_DROP_PATH:
        set_stochastic_depth(model.network.eva.blocks, 0.0)
        set_stochastic_depth(model.decoder_blocks, 0.0)
    config = scheme_config(SCHEMES[name], settings)
    recipe = recipe_of(config.recipe(name))
    config = with_recipe_ratio(config, SCHEMES[name], recipe.mask_ratio, settings)
    loop = Stage1Loop(model, SCHEMES[name](model, model.grid, total_epochs=EPOCHS, config=config),
                      torch.device("cpu"), recipe)
    crop = [int(round(p * config.crop_scale)) for p in patch]  # stage1_data.crop_size
    torch.manual_seed(1)
    steps = []
    for epoch in range(EPOCHS):
        out = loop.train_step({"data": torch.randn(2, 1, *crop)}, epoch)
        figures = {k: float(v) for k, v in out.figures.items() if k not in ("loss", "nonfinite_steps")}
        steps.append({"loss": out.loss.item(), "figures": figures,
                      "mask": "".join("1" if m else "0" for m in out.picture.cell_mask.flatten().tolist()),
                      "maps": {k: float(v.double().sum()) for k, v in out.picture.maps.items()}})
    state = {}
    for owner, module in (("model", model), ("scheme", loop.scheme)):
        for key, value in module.state_dict().items():
            part = f"{owner}.{key.split('.')[0]}"
            state[part] = state.get(part, 0.0) + float(value.double().sum())
    return {"steps": steps, "state": state}


@pytest.mark.parametrize("backbone", ["cnn", "primus"])
@pytest.mark.parametrize("case", list(CASES))
def test_losses_masks_and_state_are_unchanged(case, backbone, recorded, one_thread):
    expected, got = recorded[f"{case}/{backbone}"], replay(case, backbone)
    for step, (want, have) in enumerate(zip(expected["steps"], got["steps"])):
        assert have["mask"] == want["mask"], f"step {step}: the mask changed"
        assert have["loss"] == pytest.approx(want["loss"], rel=1e-6, abs=1e-6), f"step {step}: loss"
        assert have["figures"].keys() == want["figures"].keys(), f"step {step}: figure names"
        for name, value in want["figures"].items():
            assert have["figures"][name] == pytest.approx(value, rel=1e-6, abs=1e-6), f"step {step}: {name}"
        assert list(have["maps"]) == list(want["maps"]), f"step {step}: picture maps"
        for name, value in want["maps"].items():
            assert have["maps"][name] == pytest.approx(value, rel=1e-6, abs=1e-6), f"step {step}: map {name}"
    assert got["state"].keys() == expected["state"].keys()
    for part, value in expected["state"].items():
        assert got["state"][part] == pytest.approx(value, rel=1e-6, abs=1e-6), part
