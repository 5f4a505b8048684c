"""Where a scheme's masks (and AMLP's lesion-like cluster) fall, measured against the labels, during a real run.

Runs exactly what ``nnUNetv2_pretrain DATASET CONFIG FOLD -tr TRAINER -device D`` runs (``cli.pretrain_entry``,
in-process), with two taps that never reach the scheme: the stage-1 batches' labels (the loader produces them,
augmented with the images, and the runner drops them) are kept aside, and after each step the share of cells
holding each label is added to the step's figures, so the stage-1 log and the checkpoint's ``logging`` hold them
per epoch:

    label<L>_base_rate       cells holding label L / all cells
    label<L>_in_mask         masked cells holding label L / masked cells
    label<L>_in_cluster      (a scheme with a "lesion-like cluster" map) its cells holding L / its cells
    label<L>_cluster_recall  cells holding L that are in that cluster / cells holding L

A cell "holds" label L if any of its voxels has it. Usage (the demo data with lesions, label 2, docs/amlp.md):

    python scripts/label_share.py 993 3d_fullres all -tr nnUNetTrainerAMLP -device cpu --labels 2 1
"""
import argparse
import sys

import torch

from nnunet_anatomask import cli
from nnunet_anatomask.trainers import stage1

CLUSTER_MAP = "lesion-like cluster"


def cells_holding(target: torch.Tensor, label: int, grid) -> torch.Tensor:
    """Bool [B, N]: cells with at least one voxel of ``label`` in the batch's label map [B, 1, *patch]."""
    return grid.patchify((target == label).float()).amax(dim=(-1, -2)) > 0


def label_figures(holding: torch.Tensor, cell_mask: torch.Tensor, maps: dict, prefix: str) -> dict:
    """The shares above for one label, as 0-d tensors (averaged per epoch by the runner)."""
    def share(part, whole):
        return (part & whole).sum() / whole.sum().clamp_min(1)
    figures = {f"{prefix}_base_rate": holding.float().mean(), f"{prefix}_in_mask": share(holding, cell_mask)}
    if CLUSTER_MAP in maps:
        cluster = maps[CLUSTER_MAP].bool()
        figures.update({f"{prefix}_in_cluster": share(holding, cluster),
                        f"{prefix}_cluster_recall": share(cluster, holding)})
    return figures


def tap_batches(kept: dict):
    """Replace the runner's batch source by one that keeps each batch's labels in ``kept['target']``."""
    make_batches = stage1.stage1_batches

    class Tap:
        def __init__(self, batches):
            self.batches = batches

        def __iter__(self):
            return self

        def __next__(self):
            batch = next(self.batches)
            kept["target"] = batch["target"]
            return batch

    stage1.stage1_batches = lambda trainer, crop_scale=1.0: Tap(make_batches(trainer, crop_scale))


def tap_step(scheme_class, kept: dict, labels: list[int]) -> None:
    """Wrap the scheme's step: same loss, mask and picture, plus the label shares in its figures."""
    step = scheme_class.step

    def measured_step(self, images, model, epoch):
        out = step(self, images, model, epoch)
        target = kept["target"].to(images.device)
        figures = dict(out.figures)
        for label in labels:
            holding = cells_holding(target, label, self.grid)
            figures.update(label_figures(holding, out.picture.cell_mask, out.picture.maps, f"label{label}"))
        return out._replace(figures=figures)

    scheme_class.step = measured_step


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[1], help="labels to measure (default 1)")
    args, pretrain_args = parser.parse_known_args(argv)
    trainer_name = pretrain_args[pretrain_args.index("-tr") + 1]
    kept = {}
    tap_batches(kept)
    tap_step(cli.scheme_trainer_class(trainer_name).scheme_class, kept, args.labels)
    cli.pretrain_entry(pretrain_args)


if __name__ == "__main__":
    main(sys.argv[1:])
