"""The report's figures: test Dice against the label fraction, and the stage-2 learning curves."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from nnunet_anatomask.evaluation import curves
from nnunet_anatomask.evaluation.trainer_names import SCRATCH, short_name


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def dice_vs_fraction(path: str, rows: Sequence[dict], fractions: Sequence[float], counts: Sequence[int],
                     title: str) -> None:
    """Mean test Dice against the label fraction (log axis), one line per trainer (Scratch dashed); the bars span
    the runs' means (lowest to highest seed)."""
    import matplotlib.ticker
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for tr in dict.fromkeys(r["trainer"] for r in rows):
        mine = sorted((r for r in rows if r["trainer"] == tr), key=lambda r: r["fraction"])
        x = np.array([r["fraction"] * 100 for r in mine])
        y = np.array([r["mean_dice"] for r in mine])
        spread = np.array([[y_ - min(r["run_means"]), max(r["run_means"]) - y_] for r, y_ in zip(mine, y)]).T
        ax.errorbar(x, y, yerr=spread, marker="o", capsize=3, linestyle="--" if tr == SCRATCH else "-",
                    label=short_name(tr))
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xticks([f * 100 for f in fractions])
    ax.set_xticklabels([f"{f * 100:g} %\n({n})" for f, n in zip(fractions, counts)])
    ax.set_xlabel("labelled training cases")
    ax.set_ylabel("mean test Dice")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def learning_curves(path: str, panels: dict, title: str) -> list[str]:
    """One panel per (fraction, lr): nnU-Net's per-epoch validation pseudo-Dice over stage-2 iterations, per
    trainer the mean over its runs (line) and their range (band). Not nnU-Net's moving average: with tens of
    epochs it lags the curve by about ten of them. One colour per trainer in every panel, and one legend beside
    the panels that names every trainer (a trainer may appear in one panel only). Returns the legend's labels.

    ``panels``: {panel title: {trainer: [curve dicts]}}.
    """
    plt = _pyplot()
    trainers = list(dict.fromkeys(tr for by_trainer in panels.values() for tr in by_trainer))
    palette = plt.get_cmap("tab10" if len(trainers) <= 10 else "tab20")
    colours = {tr: palette(i % palette.N) for i, tr in enumerate(trainers)}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False, sharey=True)
    handles = {}
    for ax, (name, by_trainer) in zip(axes[0], panels.items()):
        for tr, runs in by_trainer.items():
            n = min(len(c["mean_fg_dice"]) for c in runs)
            values = np.array([c["mean_fg_dice"][:n] for c in runs])
            x = curves.iterations(runs[0])[:n]
            handles[tr], = ax.plot(x, values.mean(0), linestyle="--" if tr == SCRATCH else "-", color=colours[tr],
                                   marker="o" if n < 4 else None)
            ax.fill_between(x, values.min(0), values.max(0), color=colours[tr], alpha=0.2)
        ax.set_title(name)
        ax.set_xlabel("stage-2 iterations")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation pseudo-Dice")
    labels = [short_name(tr) for tr in trainers]
    fig.legend([handles[tr] for tr in trainers], labels, title="trainer", fontsize=8, loc="center left",
               bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return labels
