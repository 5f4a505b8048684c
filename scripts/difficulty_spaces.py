"""Which cells of a real brain slice count as "hard" in each difficulty space (docs/architecture.md, "How hard is a
cell"): the normalised space, the raw space, and the official AnatoMask code's score (a normalised prediction
against raw intensities).

The slice: mricron-data's Colin27 T1 brain (``ch2bet.nii.gz``, 1 mm), an axial slice through the ventricles, with
Rician noise of 3 % of the brain's 99th percentile (the middle of the evaluation subjects' range,
evaluation/anatomy_synthesis.Augment) and z-scored over the brain with 0 outside (nnU-Net's ZScoreNormalization with
use_mask_for_norm, as it plans skull-stripped brains). Cells of 16 x 16 voxels (a 2d plan with 4+ poolings). Two
stand-ins for a reconstruction: "flat" (every cell's mean: what a network predicts where it cannot predict) and
"smooth" (the slice blurred with a Gaussian of 4 voxels: the low frequencies an MAE learns first). No training.

    python scripts/difficulty_spaces.py [--out docs/img/difficulty_spaces.png] [--top 0.1]
"""
import argparse

import numpy as np
import torch
from scipy import ndimage
from scipy.stats import spearmanr

from nnunet_anatomask.evaluation import anatomy_labels, anatomy_sources
from nnunet_anatomask.pretraining import losses
from nnunet_anatomask.pretraining.grid import MaskGrid

CELL = 16
NOISE = 0.03


def brain_slice(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The z-scored noisy slice, its brain mask and the same slice without noise (z-scored alike), cropped to a
    multiple of CELL."""
    mricron = anatomy_sources.find_mricron_dir()
    if mricron is None:
        raise SystemExit("needs mricron-data: " + anatomy_sources.INSTALL_HINT)
    template = anatomy_labels.colin27_lobes(mricron)
    brain3d = template.image > 0
    z = int(np.round(0.6 * brain3d.shape[0]))  # above the middle: ventricles, basal ganglia, cortex all around
    image = template.image[z]
    h, w = (s // CELL * CELL for s in image.shape)
    oy, ox = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    image = image[oy:oy + h, ox:ox + w]
    brain = image > 0
    rng = np.random.default_rng(seed)
    scale = np.percentile(image[brain], 99)
    noisy = np.hypot(image / scale + rng.normal(0, NOISE, image.shape), rng.normal(0, NOISE, image.shape))
    mean, std = noisy[brain].mean(), noisy[brain].std()
    normalised = np.where(brain, (noisy - mean) / std, 0.0)
    clean = np.where(brain, (image / scale - mean) / std, 0.0)
    return normalised.astype(np.float32), brain, clean.astype(np.float32)


def predictions(images: torch.Tensor, grid: MaskGrid) -> dict[str, torch.Tensor]:
    """Stand-in reconstructions in the per-cell normalised space the networks predict in: "flat" (0, every cell's
    mean) and "smooth" (each cell of the blurred slice normalised by its own mean and std: the cell's low-frequency
    shape at unit variance)."""
    blurred = torch.from_numpy(ndimage.gaussian_filter(images[0, 0].numpy(), 4.0))[None, None]
    return {"flat": torch.zeros_like(images), "smooth": grid.unpatchify(losses.normalized_target(blurred, grid))}


def official_anatomask_score(prediction: torch.Tensor, images: torch.Tensor, grid: MaskGrid) -> torch.Tensor:
    """The official code's teacher score, ((rec - inp) ** 2).mean(): the normalised-space output against the
    (nnU-Net-normalised) input."""
    return grid.patchify(prediction - images).square().mean(dim=(-1, -2))


def describe(scores: torch.Tensor, cells: dict, top: float) -> dict:
    """What the top fraction of cells by ``scores`` holds, as shares of those cells."""
    k = max(1, round(top * scores.numel()))
    hard = torch.zeros_like(scores, dtype=torch.bool).view(-1)
    hard[scores.view(-1).topk(k).indices] = True
    hard = hard.view_as(scores)
    return {name: (hard & where).sum().item() / k for name, where in cells.items()} | {"hard": hard}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write a figure of the hard cells here")
    parser.add_argument("--top", type=float, default=0.1, help="share of cells called hard (default 0.1)")
    args = parser.parse_args(argv)
    normalised, brain, clean = brain_slice()
    images = torch.from_numpy(normalised)[None, None]
    grid = MaskGrid(normalised.shape, (CELL, CELL))
    in_brain = grid.patchify(torch.from_numpy(brain.astype(np.float32))[None, None]).mean(dim=(-1, -2))
    std = losses.cell_statistics(images, grid)[1][..., 0, 0]
    structure = losses.cell_statistics(torch.from_numpy(clean)[None, None], grid)[1][..., 0, 0]  # without noise
    inside = in_brain > 0.9
    split = structure[inside].median()
    cells = {"outside the brain (< 10 % brain)": in_brain < 0.1,
             "at the brain's edge (10-90 %)": (in_brain >= 0.1) & (in_brain <= 0.9),
             "inside, structured (noise-free std > median)": inside & (structure > split),
             "inside, homogeneous": inside & (structure <= split)}
    print(f"Colin27 axial slice {normalised.shape}, {grid.num_cells} cells of {CELL}x{CELL}; cells: " +
          ", ".join(f"{n} {w.sum().item()}" for n, w in cells.items()))
    print(f"\n| reconstruction | space | top {args.top:.0%} of cells: " + " | ".join(cells) +
          " | their mean cell std | rank corr. with cell variance |")
    print("|---|---|" + "---|" * (len(cells) + 2))
    figures = {}
    for name, prediction in predictions(images, grid).items():
        scores = {space: losses.cell_difficulty(prediction, images, grid, space) for space in losses.DIFFICULTY_SPACES}
        scores["official AnatoMask score"] = official_anatomask_score(prediction, images, grid)
        for space, s in scores.items():
            found = describe(s, cells, args.top)
            hard = found.pop("hard")
            rank = spearmanr(s.view(-1).numpy(), std.view(-1).numpy())[0]
            print(f"| {name} | {space} | " + " | ".join(f"{v:.2f}" for v in found.values()) +
                  f" | {std[hard].mean().item():.2f} | {rank:.2f} |")
            figures[(name, space)] = (s, hard)
    flat = {space: losses.cell_difficulty(torch.zeros_like(images), images, grid, space)[in_brain >= 0.1]
            for space in losses.DIFFICULTY_SPACES}
    print(f"\nflat reconstruction over the {int((in_brain >= 0.1).sum())} cells holding brain: normalised error "
          f"{flat['normalized'].min():.6f}..{flat['normalized'].max():.6f} (equal up to the 1e-6 in the normalisation, "
          f"which alone orders them), "
          f"raw error {flat['raw'].min():.3f}..{flat['raw'].max():.3f}")
    if args.out:
        plot(normalised, grid, figures, args.out, args.top)


def plot(normalised: np.ndarray, grid: MaskGrid, figures: dict, path: str, top: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = sorted({n for n, _ in figures}, key=["flat", "smooth"].index)
    spaces = list(dict.fromkeys(s for _, s in figures))
    fig, axes = plt.subplots(len(names), len(spaces), figsize=(4 * len(spaces), 4 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        for col, space in enumerate(spaces):
            _, hard = figures[(name, space)]
            ax = axes[row, col]
            ax.imshow(normalised, cmap="gray")
            outline = grid.cell_values_to_voxels(hard.float())[0, 0].numpy()
            ax.imshow(np.ma.masked_where(outline == 0, outline), cmap="autumn", alpha=0.45, vmin=0, vmax=1)
            ax.set_title(f"{name} reconstruction\n{space}: top {top:.0%} cells", fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
