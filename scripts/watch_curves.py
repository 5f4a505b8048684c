"""Stage-1 runs side by side: training against held-out loss, and the linear probe's Dice (docs/watching.md).

    python scripts/watch_curves.py OUT_PREFIX RUN_FOLDER [RUN_FOLDER ...]

RUN_FOLDER is a fold's ``pretraining/`` folder (its checkpoint_final.pth is read). Writes OUT_PREFIX_loss.png (per
run: training loss, solid; held-out loss, dashed) and, where the runs were probed, OUT_PREFIX_probe.png (per run:
the probe's validation Dice, solid; on the initial weights, dashed; chance, dotted), and prints the values.
"""
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def load(folder: str) -> tuple[str, dict]:
    ckpt = torch.load(os.path.join(folder, "checkpoint_final.pth"), map_location="cpu", weights_only=True)
    return ckpt["scheme"], ckpt["logging"]


def points(values: list) -> tuple[list, list]:
    """(epochs, values) where a value was logged."""
    kept = [(e, v) for e, v in enumerate(values) if v is not None and not math.isnan(v)]
    return [e for e, _ in kept], [v for _, v in kept]


def main(out: str, folders: list[str]) -> None:
    runs = [load(f) for f in folders]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for (scheme, log), colour in zip(runs, colours):
        ax.plot(*points(log["loss"]), color=colour, label=f"{scheme}: training loss (its own masks)")
        ax.plot(*points(log["heldout_loss"]), color=colour, linestyle="--",
                label=f"{scheme}: held-out loss (fixed crops and masks)")
        print(scheme, "loss", [round(v, 4) for v in log["loss"]])
        print(scheme, "heldout_loss", [round(v, 4) for v in log["heldout_loss"]])
    ax.set(xlabel="epoch", ylabel="masked MSE (per-cell normalised)", title="Stage 1: training and held-out loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(f"{out}_loss.png", dpi=100)
    probed = [(scheme, log) for scheme, log in runs if log.get("probe_dice")]
    if not probed:
        return
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for (scheme, log), colour in zip(probed, colours):
        ax.plot(*points(log["probe_dice"]), color=colour, marker="o", label=f"{scheme}: linear probe")
        epochs, at_init = points(log["probe_dice_at_init"])
        ax.plot(epochs, at_init, color=colour, linestyle="--", label=f"{scheme}: probe at initialisation")
        print(scheme, "probe_dice", [(e, round(v, 4)) for e, v in zip(*points(log["probe_dice"]))],
              "at init", round(at_init[0], 4), "chance", round(points(log["probe_chance"])[1][0], 4))
    ax.plot(*points(probed[0][1]["probe_chance"]), color="black", linestyle=":", label="chance (all foreground)")
    ax.set(xlabel="epoch", ylabel="validation Dice (mean over classes)", title="Stage 1: linear probe")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(f"{out}_probe.png", dpi=100)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    main(sys.argv[1], sys.argv[2:])
