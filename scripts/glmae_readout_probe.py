"""How much a bottleneck readout varies with the input, on a freshly initialised plans network (docs/glmae.md).

    python scripts/glmae_readout_probe.py $nnUNet_preprocessed/Dataset990_AnatoMaskDemo [--configuration 3d_fullres]

Builds the configuration's network as stage 1 does (num_classes = input channels, no deep supervision) under the
CNN backbone, feeds it one patch of every preprocessed training case plus 3 noise volumes, nothing masked, and
prints the pairwise cosine between inputs of the mean-pooled bottleneck and of GL-MAE's layout readout, and the
cosine between the masked (GL-MAE's ratio) and the un-masked view of the same input.
"""
import argparse
import glob
import os

import blosc2
import numpy as np
import torch
import torch.nn.functional as F
from batchgenerators.utilities.file_and_folder_operations import load_json
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_anatomask.pretraining import masking
from nnunet_anatomask.pretraining.backbones import backbone_for
from nnunet_anatomask.pretraining.schemes.glmae import GLMAEScheme


def mean_off_diagonal_cosine(z: torch.Tensor) -> float:
    unit = F.normalize(z, dim=1)
    cosine = unit @ unit.T
    return cosine[~torch.eye(len(z), dtype=torch.bool)].mean().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dataset_folder", help="nnUNet_preprocessed/DatasetXXX_Name")
    p.add_argument("--configuration", default="3d_fullres")
    p.add_argument("--plans", default="nnUNetPlans")
    args = p.parse_args()
    torch.manual_seed(0)
    config = PlansManager(load_json(os.path.join(args.dataset_folder, args.plans + ".json"))).get_configuration(
        args.configuration)
    channels = len(load_json(os.path.join(args.dataset_folder, "dataset.json"))["channel_names"])
    patch = tuple(config.patch_size)
    network = get_network_from_plans(config.network_arch_class_name, config.network_arch_init_kwargs,
                                     config.network_arch_init_kwargs_req_import, channels, channels,
                                     deep_supervision=False)
    backbone = backbone_for(network, patch)
    model = backbone.masked_model(network).eval()
    scheme = GLMAEScheme(model, backbone.grid, total_epochs=1)
    files = sorted(f for f in glob.glob(os.path.join(args.dataset_folder, config.data_identifier, "*.b2nd"))
                   if not f.endswith("_seg.b2nd"))
    cases = [torch.from_numpy(np.asarray(blosc2.open(f)[:])).float() for f in files]
    cases = [c[(slice(None), *[slice(0, n) for n in patch])] for c in cases if all(
        s >= n for s, n in zip(c.shape[1:], patch))]
    images = torch.stack(cases + [torch.randn(channels, *patch) for _ in range(3)])
    nothing = torch.zeros(len(images), backbone.grid.num_cells, dtype=torch.bool)
    masked = masking.random_mask(torch.rand(len(images), backbone.grid.num_cells), scheme.n_masked(0))
    with torch.no_grad():
        dense = model(images, scheme.grid_mask(nothing), features=True).encoder_skips[-1]
        sparse = model(images, scheme.grid_mask(masked), features=True).encoder_skips[-1]
    print(f"{len(cases)} cases + 3 noise volumes, patch {patch}, bottleneck {tuple(dense.shape[1:])}")
    mean_pooled = dense.mean(tuple(range(2, dense.ndim)))
    print(f"mean-pooled bottleneck: mean pairwise cosine between inputs {mean_off_diagonal_cosine(mean_pooled):.3f}")
    layout = scheme.layout(dense, nothing)
    print(f"layout readout: mean pairwise cosine between inputs {mean_off_diagonal_cosine(layout):.3f}")
    same = F.cosine_similarity(scheme.layout(sparse, masked), layout, dim=1).mean().item()
    print(f"layout readout: cosine between the masked ({scheme.mask_ratio}) and the un-masked view of the same "
          f"input {same:.3f}")


if __name__ == "__main__":
    main()
