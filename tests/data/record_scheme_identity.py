"""Records every scheme's losses, figures, masks and end state on fixed seeds, on both backbones, into
tests/data/scheme_identity.json, for tests/pretraining/schemes/test_identity.py (losses and masks must stay
identical, to 1e-6, through refactors).

It is written against the scheme API BEFORE the seams refactor (issue 24): scheme settings as class attributes,
``step(images, model, epoch)``. Run it on a snapshot of the reference commit, with this repository's venv:

    git archive <commit> | tar -x -C /tmp/ref && cd /tmp/ref && \\
        PYTHONPATH=/tmp/ref PYTHONDONTWRITEBYTECODE=1 <repo>/.venv/bin/python tests/data/record_scheme_identity.py OUT.json

Each case: seed 0, build the tiny network (the tests' CNN: 3-stage PlainConvUNet on 16³, 4³ cells; the tests'
Primus: 2 EVA blocks on 32³, 4³ tokens), the masked model, the scheme (3 epochs) and AdamW at the scheme's lr;
seed 1; then one step per epoch 0, 1, 2 (random crops of 2 samples at the scheme's crop size): zero_grad, step,
backward, clip, AdamW step, on_step_end. One torch thread (one summation order).
"""
import json
import sys

import torch

from nnunet_anatomask.pretraining.backbones import backbone_for
from nnunet_anatomask.pretraining.schemes import SCHEMES
from tests.pretraining.backbones.test_primus import PATCH as PRIMUS_PATCH, tiny_primus
from tests.pretraining.schemes.conftest import tiny_model

# name -> (scheme, settings that differ from its defaults)
CASES = {
    "RandomMask": ("RandomMask", {}),
    "AnatoMask": ("AnatoMask", {}),
    "AnatoMask_complementary": ("AnatoMask", {"error_map": "complementary"}),
    "SelfMedHPM": ("SelfMedHPM", {}),
    "GLMAE": ("GLMAE", {}),
    "AMLP": ("AMLP", {}),
    "AMLP_encoder": ("AMLP", {"cell_features": "encoder"}),
    "AMLP_no_mps": ("AMLP", {"use_mps": False}),
    "AMLP_no_arl": ("AMLP", {"use_arl": False}),
    "AMLP_no_ccl": ("AMLP", {"use_ccl": False}),
    "AMLP_no_amr": ("AMLP", {"use_amr": False}),
}
EPOCHS = 3


def masked_model(backbone: str):
    torch.manual_seed(0)
    if backbone == "cnn":
        return tiny_model(), (16, 16, 16)
    network = tiny_primus()
    return backbone_for(network, PRIMUS_PATCH).masked_model(network), PRIMUS_PATCH


def record(case: str, backbone: str) -> dict:
    name, settings = CASES[case]
    model, patch = masked_model(backbone)
    scheme_class = type(f"{name}Variant", (SCHEMES[name],), dict(settings)) if settings else SCHEMES[name]
    scheme = scheme_class(model, model.grid, total_epochs=EPOCHS)
    params = list(model.parameters()) + scheme.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=scheme.base_lr, betas=scheme.betas, weight_decay=scheme.weight_decay)
    crop = [int(round(p * scheme.crop_scale)) for p in patch]  # stage1_data.crop_size
    torch.manual_seed(1)
    steps = []
    for epoch in range(EPOCHS):
        images = torch.randn(2, 1, *crop)
        optimizer.zero_grad(set_to_none=True)
        out = scheme.step(images, model, epoch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, scheme.grad_clip)
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
