"""The report's figures."""
from __future__ import annotations

from typing import Sequence

from nnunet_anatomask.evaluation.trainer_names import SCRATCH, short_name


def dice_vs_fraction(path: str, trainers: Sequence[str], fractions: Sequence[float], counts: Sequence[int],
                     table: dict, title: str) -> None:
    """Mean test Dice against the label fraction (log axis), one line per trainer (Scratch dashed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, ax = plt.subplots(figsize=(6, 4))
    for tr in trainers:
        ks = [k for k in range(len(fractions)) if f"{tr}|{k}" in table]
        if ks:
            ax.plot([fractions[k] * 100 for k in ks], [table[f"{tr}|{k}"]["mean_dice"] for k in ks], marker="o",
                    linestyle="--" if tr == SCRATCH else "-", label=short_name(tr))
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
