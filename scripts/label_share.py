"""Where a scheme's masks (and AMLP's lesion-like cluster) fall, measured against the labels, during a real run.

Runs exactly what ``nnUNetv2_pretrain DATASET CONFIG FOLD -tr TRAINER -device D`` runs (``cli.pretrain``,
in-process) with one runner callback (trainers/stage1_callbacks.py) that the scheme never sees: after each step it
reads the batch's labels (the loader produces them, augmented with the images; the scheme gets the batch without
them) and returns the share of cells holding each label as figures, so the stage-1 log and the checkpoint's
``logging`` hold them per epoch:

    label<L>_base_rate       cells holding label L / all cells
    label<L>_in_mask         masked cells holding label L / masked cells
    label<L>_in_cluster      (a scheme with a "lesion-like cluster" map) its cells holding L / its cells
    label<L>_cluster_recall  cells holding L that are in that cluster / cells holding L
    label<L>_in_hard_<space>     (AMLP) CCL's hard cells (2-means on the masked cells' difficulty in <space>,
                                 normalized and raw, from the step's own prediction) holding L / hard cells
    label<L>_arl_share_<space>   (AMLP) the share of ARL's weight (from difficulty in <space>) on cells holding L
    arl_entropy_<space>          (AMLP) ARL's weight entropy / log M in <space> (1 = uniform = plain MSE)

A cell "holds" label L if any of its voxels has it. Usage (the demo data with lesions, label 2, docs/amlp.md):

    python scripts/label_share.py 993 3d_fullres all -tr nnUNetTrainerAMLP -device cpu --labels 2 1
"""
import argparse
import json
import os
import sys

import torch

from nnunet_anatomask import cli, knobs
from nnunet_anatomask.errors import PluginError
from nnunet_anatomask.pretraining import losses
from nnunet_anatomask.pretraining.schemes import amlp
from nnunet_anatomask.trainers.stage1_callbacks import Stage1Callback

CLUSTER_MAP = "lesion-like cluster"
HARD_MAP = "hard (CCL)"


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


def difficulty_figures(runner, picture, holding: dict[int, torch.Tensor]) -> dict:
    """For AMLP (a step with CCL's hard cells): which cells ARL and CCL would call hard in each difficulty space,
    from the same prediction, and how much of each lands on cells holding each label."""
    figures, config, grid = {}, runner.scheme.config, runner.grid
    for space in losses.DIFFICULTY_SPACES:
        difficulty = losses.cell_difficulty(picture.prediction, picture.images, grid, space)
        hard = amlp.hard_cells(difficulty, picture.cell_mask, config.kmeans_iterations)
        weights, p = amlp.arl_weights(difficulty, picture.cell_mask, config.arl_temperature)
        figures[f"arl_entropy_{space}"] = amlp.weight_entropy(p, picture.cell_mask)
        for label, cells in holding.items():
            figures[f"label{label}_in_hard_{space}"] = (hard & cells).sum() / hard.sum().clamp_min(1)
            figures[f"label{label}_arl_share_{space}"] = (weights * cells).sum() / weights.sum().clamp_min(1e-12)
    return figures


class LabelShares(Stage1Callback):
    """After every step: the label shares of the step's mask (and cluster, and AMLP's hard cells), as figures."""

    def __init__(self, labels: list[int]):
        self.labels = labels

    def on_step_end(self, runner, epoch: int, batch: dict, out) -> dict:
        target = batch["target"][0] if isinstance(batch["target"], list) else batch["target"]
        cell_mask = out.picture.cell_mask
        target = target.to(cell_mask.device)
        figures = {}
        holding = {label: cells_holding(target, label, runner.grid) for label in self.labels}
        for label, cells in holding.items():
            figures.update(label_figures(cells, cell_mask, out.picture.maps, f"label{label}"))
        if HARD_MAP in out.picture.maps:
            figures.update(difficulty_figures(runner, out.picture, holding))
        return figures


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[1], help="labels to measure (default 1)")
    parser.add_argument("--amlp-cell-features", choices=("blob", "intensity", "encoder"),
                        help="run AMLP with these cell features instead of its default (a comparison run)")
    args, pretrain_args = parser.parse_known_args(argv)
    if args.amlp_cell_features:  # a scheme setting, as a user sets it (docs/usage.md)
        os.environ[knobs.SCHEME_CONFIG] = json.dumps({"cell_features": args.amlp_cell_features})
    try:
        cli.pretrain(cli.parse_args(pretrain_args), callbacks=[LabelShares(args.labels)])
    except PluginError as e:
        raise SystemExit(f"label_share: {e}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
