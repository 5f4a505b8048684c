"""Every registered scheme runs unchanged on the Primus backbone (token dropping): the scheme chooses cells, the
backbone decides how masking is applied. Two optimiser steps on a tiny Primus with the loader's crop size."""
import math

import pytest
import torch

from nnunet_anatomask.pretraining.backbones import backbone_for
from nnunet_anatomask.pretraining.recipes import NNSSL_EVA_MAE
from nnunet_anatomask.pretraining.schemes import SCHEMES
from tests.pretraining.backbones.test_primus import PATCH, tiny_primus
from tests.trainers.test_stage1_loop import cpu_loop


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_scheme_trains_primus_encoder(name):
    torch.manual_seed(0)
    network = tiny_primus()
    model = backbone_for(network, PATCH).masked_model(network, NNSSL_EVA_MAE)
    scheme = SCHEMES[name](model, model.grid, total_epochs=4)
    runner = cpu_loop(model, scheme)
    before = {k: v.clone() for k, v in network.eva.state_dict().items()}
    crop = [math.ceil(p * scheme.config.crop_scale) for p in PATCH]  # what stage1_batches hands over
    for epoch in range(2):
        out = runner.train_step({"data": torch.randn(2, 1, *crop)}, epoch)
        assert torch.isfinite(out.figures["loss"]) and out.figures["nonfinite_steps"] == 0
        assert tuple(out.picture.images.shape[2:]) == PATCH and out.picture.cell_mask.shape[1] == 64
    moved = [k for k, v in network.eva.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("blocks.0.") for k in moved), "the first encoder block did not train"


def test_amlp_clusters_primus_encoder_features():
    """AMLP's cell_features = "encoder" setting reads the Primus encoder output on the token grid (one point of
    embed_dim features per token)."""
    from nnunet_anatomask.pretraining.schemes.amlp import AMLPConfig, AMLPScheme

    torch.manual_seed(0)
    network = tiny_primus()
    model = backbone_for(network, PATCH).masked_model(network, NNSSL_EVA_MAE)
    scheme = AMLPScheme(model, model.grid, total_epochs=3, config=AMLPConfig(cell_features="encoder"))
    runner = cpu_loop(model, scheme)
    for epoch in range(2):
        assert torch.isfinite(runner.train_step({"data": torch.randn(2, 1, *PATCH)}, epoch).figures["loss"])
    assert scheme.centroids.shape == (1, scheme.config.clusters, network.embed_dim)
