"""Does GL-MAE's embedding depend on the input? Two probes on the preprocessed cases of a dataset (docs/glmae.md).

    python scripts/glmae_readout_probe.py $nnUNet_preprocessed/Dataset990_AnatoMaskDemo [--configuration 3d_fullres]
    python scripts/glmae_readout_probe.py $nnUNet_preprocessed/Dataset990_AnatoMaskDemo --checkpoint \\
        $nnUNet_results/.../fold_all/pretraining/checkpoint_final.pth

Without --checkpoint: a freshly initialised network of the configuration, built as stage 1 builds it, is fed one
patch of every training case plus 3 noise volumes with nothing masked. The probe prints the pairwise cosine between
inputs of the mean-pooled bottleneck and of GL-MAE's layout readout. It also prints the cosine between the masked
view (GL-MAE's ratio) and the un-masked view of the same input.
With --checkpoint (a GL-MAE stage-1 checkpoint): every case's crop of 5/3 x the patch, centred, zero-padded where the
case is smaller, as nnU-Net's loader pads, resized to the global view. The probe prints the pairwise cosine
between cases of the teacher's anchors and of the student's masked-global embeddings, and the G2G of each case
against its own anchor and against the next case's.
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

from nnunet_anatomask.pretraining import masking, views
from nnunet_anatomask.pretraining.backbones import backbone_for
from nnunet_anatomask.pretraining.schemes.glmae import GLMAEScheme, consistency
from nnunet_anatomask.trainers.stage1_data import crop_size


def mean_off_diagonal_cosine(z: torch.Tensor) -> float:
    unit = F.normalize(z, dim=1)
    cosine = unit @ unit.T
    return cosine[~torch.eye(len(z), dtype=torch.bool)].mean().item()


def build(dataset_folder: str, configuration: str, plans: str) -> tuple[GLMAEScheme, tuple[int, ...], list]:
    """A GL-MAE scheme around the configuration's stage-1 network (CNN backbone), the patch, and the cases."""
    config = PlansManager(load_json(os.path.join(dataset_folder, plans + ".json"))).get_configuration(configuration)
    channels = len(load_json(os.path.join(dataset_folder, "dataset.json"))["channel_names"])
    network = get_network_from_plans(config.network_arch_class_name, config.network_arch_init_kwargs,
                                     config.network_arch_init_kwargs_req_import, channels, channels,
                                     deep_supervision=False)
    patch = tuple(config.patch_size)
    backbone = backbone_for(network, patch)
    recipe = backbone.recipe(GLMAEScheme.config_class().recipe(GLMAEScheme.name))  # as stage 1 builds it
    scheme = GLMAEScheme(backbone.masked_model(network, recipe), backbone.grid, total_epochs=1)
    files = sorted(f for f in glob.glob(os.path.join(dataset_folder, config.data_identifier, "*.b2nd"))
                   if not f.endswith("_seg.b2nd"))
    return scheme, patch, [torch.from_numpy(np.asarray(blosc2.open(f)[:])).float() for f in files]


def centred(case: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """The centred box of ``size`` of a case ``[C, *spatial]``, zero-padded where the case is smaller."""
    pad = [v for s, n in reversed(list(zip(case.shape[1:], size))) for v in ((n - s + 1) // 2, (n - s) // 2)]
    case = F.pad(case, [max(0, v) for v in pad])
    starts = [(s - n) // 2 for s, n in zip(case.shape[1:], size)]
    return case[(slice(None), *[slice(b, b + n) for b, n in zip(starts, size)])]


def probe_initial_readouts(scheme: GLMAEScheme, patch: tuple[int, ...], cases: list) -> None:
    model, grid = scheme.student, scheme.grid
    images = torch.stack([centred(c, patch) for c in cases] + [torch.randn(cases[0].shape[0], *patch)
                                                              for _ in range(3)])
    nothing = torch.zeros(len(images), grid.num_cells, dtype=torch.bool)
    masked = masking.random_mask(torch.rand(len(images), grid.num_cells), scheme.n_masked(0))
    with torch.no_grad():
        dense = model.encode(images, scheme.grid_mask(nothing)).stages[-1]
        sparse = model.encode(images, scheme.grid_mask(masked)).stages[-1]
    print(f"{len(cases)} cases + 3 noise volumes, patch {patch}, bottleneck {tuple(dense.shape[1:])}")
    mean_pooled = dense.mean(tuple(range(2, dense.ndim)))
    print(f"mean-pooled bottleneck: mean pairwise cosine between inputs {mean_off_diagonal_cosine(mean_pooled):.3f}")
    layout = scheme.layout(dense, nothing)
    print(f"layout readout: mean pairwise cosine between inputs {mean_off_diagonal_cosine(layout):.3f}")
    same = F.cosine_similarity(scheme.layout(sparse, masked), layout, dim=1).mean().item()
    print(f"layout readout: cosine between the masked ({scheme.config.mask_ratio}) and the un-masked view of the same "
          f"input {same:.3f}")


def probe_checkpoint(scheme: GLMAEScheme, patch: tuple[int, ...], cases: list, path: str) -> None:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = scheme.student
    model.network.load_state_dict(ckpt["network_weights"])
    model.load_extra_state_dict(ckpt["scheme_state"]["model_extra"])
    scheme.load_state_dict(ckpt["scheme_state"]["scheme"])
    crop = crop_size(patch, scheme.config.crop_scale)
    global_views = views.resize(torch.stack([centred(c, crop) for c in cases]), patch)
    masked = masking.random_mask(torch.rand(len(cases), scheme.grid.num_cells), scheme.n_masked(0))
    with torch.no_grad():
        anchor = scheme.teacher_embedding(global_views)
        bottleneck = model.encode(global_views, scheme.grid_mask(masked)).stages[-1]
        student = scheme.predictor(scheme.projector(scheme.layout(bottleneck, masked)))
    print(f"{len(cases)} cases, global views of {crop} crops; checkpoint epoch {ckpt['current_epoch']}")
    print(f"teacher anchors: mean pairwise cosine between cases {mean_off_diagonal_cosine(anchor):.3f}")
    print("student masked-global embeddings: mean pairwise cosine between cases "
          f"{mean_off_diagonal_cosine(student):.3f}")
    print(f"G2G against the own case's anchor {consistency(student, anchor).mean():.3f}, against the next case's "
          f"{consistency(student, anchor.roll(1, 0)).mean():.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dataset_folder", help="nnUNet_preprocessed/DatasetXXX_Name")
    p.add_argument("--configuration", default="3d_fullres")
    p.add_argument("--plans", default="nnUNetPlans")
    p.add_argument("--checkpoint", help="a GL-MAE stage-1 checkpoint of this dataset and configuration")
    args = p.parse_args()
    torch.manual_seed(0)
    scheme, patch, cases = build(args.dataset_folder, args.configuration, args.plans)
    if args.checkpoint:
        probe_checkpoint(scheme, patch, cases, args.checkpoint)
    else:
        probe_initial_readouts(scheme, patch, cases)


if __name__ == "__main__":
    main()
