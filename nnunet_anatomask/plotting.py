"""Pictures for stage-1 pretraining: the progress curves here, one sample's reconstruction in reconstruction_plot.py.

* :func:`plot_progress` - a ``progress.png`` in the style of nnU-Net's: stacked
  panels (training and held-out loss, epoch time, learning rate, linear probe, scheme
  curves) sharing the epoch axis.

Both take plain lists / numpy arrays (convert torch tensors with
``t.detach().cpu().numpy()``) and write the PNG atomically (:func:`save_atomic`: temp file in the same
folder, then ``os.replace``), so a reader never sees a half-written file.
"""
from __future__ import annotations

import os
import tempfile
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

#: the fixed panels: (y label, [(key, curve label, colour, line style)]); every other key goes in a "scheme" panel
MAIN_PANELS = (
    ("loss", [("loss", "training loss", "tab:blue", "-"), ("heldout_loss", "held-out loss", "tab:red", "-")]),
    ("time [s]", [("epoch_time", "epoch duration (steps)", "tab:green", "-"),
                  ("heldout_time", "held-out loss", "tab:red", "--"),
                  ("probe_time", "linear probe", "tab:purple", "--")]),
    ("learning rate", [("lr", "learning rate", "tab:red", "-")]),
)
#: the linear probe's panel, drawn when a probe ran (trainers/stage1_probe.py)
PROBE_PANEL = ("linear probe Dice", [("probe_dice", "validation Dice", "tab:purple", "-"),
                                     ("probe_dice_at_init", "at initialisation", "tab:gray", "--"),
                                     ("probe_chance", "chance (all foreground)", "black", ":")])
MAIN_KEYS = tuple(key for _, curves in (*MAIN_PANELS, PROBE_PANEL) for key, *_ in curves)


def _umask() -> int:
    """The process umask, read from /proc (no racy os.umask round trip); 0o022 if unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def save_atomic(fig: Figure, path: str, dpi: int = 100) -> None:
    """Save ``fig`` as PNG to ``path`` via a temp file in the same folder and ``os.replace``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", prefix=".tmp_", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- progress

def _curve(ax, values: Sequence[float], label: str, **kw) -> None:
    """Plot one per-epoch curve through its logged epochs (NaN/None = not logged: a curve logged every N epochs
    is one line); markers where few epochs are logged, so a single one shows."""
    y = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    x = np.flatnonzero(np.isfinite(y))
    marker = "o" if len(x) <= 30 else None
    ax.plot(x, y[x], marker=marker, markersize=6, linewidth=2.5, label=label, **kw)


def _scheme_keys(log: dict[str, list[float]]) -> list[str]:
    """Keys of ``log`` that belong in the scheme panels (non-empty, not a main key)."""
    return [k for k, v in log.items() if k not in MAIN_KEYS + ("epoch",) and v is not None and len(v) > 0]


def _is_fraction(values: Sequence[float]) -> bool:
    """True if all finite values lie in [0, 1] (ratios, shares, overlaps...)."""
    y = np.asarray(values, dtype=float)
    y = y[np.isfinite(y)]
    return bool(y.size == 0 or (y.min() >= 0 and y.max() <= 1))


def _legend_right(ax, handles=None, labels=None, x: float = 1.01) -> None:
    """Legend outside the axes on the right, so it never hides a curve."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(x, 1.0), borderaxespad=0)


def _scheme_panels(log: dict[str, list[float]]) -> list[tuple[str, list[str]]]:
    """Group the scheme keys into panels of one scale each: (y label, keys).

    Momenta (keys with 'momentum') get one panel each as 1 - m on a log axis, so that 0.999 -> 0.9999 is visible;
    values within [0, 1] share a 'fraction' panel; every other quantity gets its own panel (no two scales on one
    axis)."""
    keys = _scheme_keys(log)
    momenta = [k for k in keys if "momentum" in k]
    fractions = [k for k in keys if k not in momenta and _is_fraction(log[k])]
    panels = [("fraction (0-1)", fractions)] if fractions else []
    panels += [(f"1 - {k} (log)", [k]) for k in momenta]
    return panels + [(k, [k]) for k in keys if k not in momenta and k not in fractions]


def _plot_panel(ax, log: dict[str, list[float]], ylabel: str, keys: list[str], colours: list[str]) -> None:
    for i, key in enumerate(keys):
        values = log[key]
        if ylabel.startswith("1 - "):
            values = [1.0 - float(v) if v is not None else float("nan") for v in values]
        _curve(ax, values, key, color=colours[i % len(colours)])
    if ylabel.startswith("1 - "):
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    _legend_right(ax)


def _plot_fixed_panel(ax, log: dict[str, list[float]], ylabel: str, curves: list) -> None:
    """One of the fixed panels: each of its curves that was logged; a note when its first curve was not."""
    first = curves[0][0]
    if not log.get(first):
        ax.text(0.5, 0.5, f"no '{first}' logged", transform=ax.transAxes, ha="center", va="center")
    for key, label, colour, style in curves:
        if log.get(key):
            _curve(ax, log[key], label, color=colour, linestyle=style)
    if log.get(first):
        _legend_right(ax)
    ax.set_ylabel(ylabel)


def plot_progress(log: dict[str, list[float]], path: str, title: str = "") -> None:
    """Write a progress plot of per-epoch values to ``path``.

    Args:
        log: name -> one value per epoch (None/NaN = not logged that epoch). 'loss'
            (with 'heldout_loss'), 'epoch_time' (s, with the held-out loss' and probe's
            seconds) and 'lr' get a panel each, the probe's Dice one when it ran
            (MAIN_PANELS, PROBE_PANEL); the other keys are grouped by
            scale (``_scheme_panels``): fractions share a panel, a momentum m is drawn as
            1 - m on a log axis, any other quantity gets a panel of its own. A missing main
            key leaves a labelled empty panel.
        path: PNG file to write.
        title: figure title.
    """
    save_atomic(progress_figure(log, title), path)


def progress_figure(log: dict[str, list[float]], title: str = "") -> Figure:
    """The figure of :func:`plot_progress` (not saved): one axis per panel, top to bottom."""
    groups = _scheme_panels(log)
    fixed = list(MAIN_PANELS) + ([PROBE_PANEL] if log.get("probe_dice") else [])
    heights = [3.0, 2.5, 2.5] + [3.0] * (len(fixed) - 3) + [3.0 if len(keys) > 1 else 2.0 for _, keys in groups]
    fig, axes = plt.subplots(len(heights), 1, figsize=(12, sum(heights) + 0.8), sharex=True, squeeze=False,
                             layout="constrained", gridspec_kw={"height_ratios": heights})
    axes = axes[:, 0]
    for ax, (ylabel, curves) in zip(axes, fixed):
        _plot_fixed_panel(ax, log, ylabel, curves)
    if log.get("epoch_time"):
        axes[1].set_ylim(bottom=0)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (ylabel, keys) in zip(axes[len(fixed):], groups):
        _plot_panel(ax, log, ylabel, keys, colours)
    n_epochs = max((len(v) for v in log.values() if v is not None), default=1)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].set_xlim(-0.5, max(n_epochs - 1, 0) + 0.5)
    if n_epochs <= 10:
        axes[-1].set_xticks(range(n_epochs))
    else:
        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("epoch")
    fig.suptitle(f"{title or 'pretraining progress'} ({n_epochs} epoch{'s' if n_epochs != 1 else ''})",
                 fontsize=14)
    return fig
