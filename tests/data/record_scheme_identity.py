"""Records every scheme's losses, figures, masks and end state on fixed seeds, on both backbones, into
tests/data/scheme_identity.json, for tests/pretraining/schemes/test_identity.py (losses and masks must stay
identical, to 1e-6, through refactors).

It is written against the scheme API BEFORE the seams refactor (issue 24): scheme settings as class attributes,
``step(images, model, epoch)``, the backbone's Stage1Recipe (issue 22). Run it on a snapshot of the reference
commit (main 3bc7a9c, after issue 22 changed AnatoMask's, SelfMedHPM's and AMLP's masks on purpose), with this
repository's venv:

    git worktree add --detach /tmp/ref <commit> && cp tests/data/record_scheme_identity.py /tmp/ref/tests/data/ && \\
        cd /tmp/ref && PYTHONPATH=/tmp/ref PYTHONDONTWRITEBYTECODE=1 <repo>/.venv/bin/python \\
        tests/data/record_scheme_identity.py OUT.json

Each case: seed 0, build the tiny network (the tests' CNN: 3-stage PlainConvUNet on 16³, 4³ cells; the tests'
Primus: 2 EVA blocks on 32³, 4³ tokens), the masked model, the backbone's recipe (the scheme's own on the CNN,
nnssl's on Primus, with its mask ratio where the paper fixes none), the scheme (3 epochs) and AdamW by the recipe;
seed 1; then one step per epoch 0, 1, 2 (random crops of 2 samples at the scheme's crop size): zero_grad, step,
backward, clip over the optimiser's parameters, AdamW step, on_step_end. One torch thread (one summation order).
"""
import json
import sys

import torch

from nnunet_anatomask.pretraining.backbones import backbone_for
from nnunet_anatomask.pretraining.backbones.primus import set_stochastic_depth
from nnunet_anatomask.pretraining.schemes import SCHEMES
from tests.pretraining.backbones.test_primus import PATCH as PRIMUS_PATCH, tiny_primus
from tests.pretraining.schemes.conftest import tiny_model

# name -> (scheme, settings that differ from its defaults)
CASES = {
    "RandomMask": ("RandomMask", {}),
    "AnatoMask": ("AnatoMask", {}),
    "AnatoMask_complementary": ("AnatoMask", {"error_map": "complementary"}),
    "AnatoMask_normalized": ("AnatoMask", {"difficulty_space": "normalized"}),
    "SelfMedHPM": ("SelfMedHPM", {}),
    "GLMAE": ("GLMAE", {}),
    "AMLP": ("AMLP", {}),
    "AMLP_intensity": ("AMLP", {"cell_features": "intensity"}),
    "AMLP_encoder": ("AMLP", {"cell_features": "encoder"}),
    "AMLP_no_mps": ("AMLP", {"use_mps": False}),
    "AMLP_no_arl": ("AMLP", {"use_arl": False}),
    "AMLP_no_ccl": ("AMLP", {"use_ccl": False}),
    "AMLP_no_amr": ("AMLP", {"use_amr": False}),
    "AMLP_random_background": ("AMLP", {"background_order": "random"}),  # see rerecord_scheme_identity.py
}
EPOCHS = 3
# On Primus these run without stochastic depth: AMLP's encoder features come from an encoder-only forward since
# issue 24 (the decoder no longer runs and is thrown away), so with drop-path on, the decoder's drop-path draws are
# missing from the random stream and every later draw differs, by design; without it the steps must be identical.
NO_DROP_PATH = ("AMLP_encoder",)


def masked_model(backbone: str):
    """(masked model, patch, the backbone's recipe for a scheme class)."""
    torch.manual_seed(0)
    if backbone == "cnn":
        return tiny_model(), (16, 16, 16), lambda scheme_class: scheme_class.recipe()
    network = tiny_primus()
    primus = backbone_for(network, PRIMUS_PATCH)
    return primus.masked_model(network), PRIMUS_PATCH, primus.recipe


def record(case: str, backbone: str) -> dict:
    name, settings = CASES[case]
    model, patch, recipe_of = masked_model(backbone)
    if backbone == "primus" and case in NO_DROP_PATH:
        set_stochastic_depth(model.network.eva.blocks, 0.0)
        set_stochastic_depth(model.decoder_blocks, 0.0)
    scheme_class = type(f"{name}Variant", (SCHEMES[name],), dict(settings)) if settings else SCHEMES[name]
    recipe = recipe_of(scheme_class)
    scheme = scheme_class(model, model.grid, total_epochs=EPOCHS, recipe_ratio=recipe.mask_ratio)
    optimizer = recipe.optimizer(list(model.parameters()) + scheme.trainable_parameters())
    params = [p for group in optimizer.param_groups for p in group["params"]]
    crop = [int(round(p * scheme.crop_scale)) for p in patch]  # stage1_data.crop_size
    torch.manual_seed(1)
    steps = []
    for epoch in range(EPOCHS):
        images = torch.randn(2, 1, *crop)
        optimizer.zero_grad(set_to_none=True)
        out = scheme.step(images, model, epoch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        optimizer.step()
        scheme.on_step_end(epoch)
        steps.append({"loss": out.loss.item(), "figures": {k: float(v) for k, v in out.figures.items()},
                      "mask": "".join("1" if m else "0" for m in out.picture.cell_mask.flatten().tolist()),
                      "maps": {k: float(v.double().sum()) for k, v in out.picture.maps.items()}})
    state = {}  # the sum of every tensor, per top-level submodule of the model and the scheme
    for owner, module in (("model", model), ("scheme", scheme)):
        for key, value in module.state_dict().items():
            part = f"{owner}.{key.split('.')[0]}"
            state[part] = state.get(part, 0.0) + float(value.double().sum())
    return {"steps": steps, "state": state}


def main(out: str) -> None:
    torch.set_num_threads(1)
    cases = {f"{case}/{backbone}": record(case, backbone) for case in CASES for backbone in ("cnn", "primus")}
    with open(out, "w") as f:
        json.dump(cases, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
