"""Pictures for stage-1 (masked-image-modelling) pretraining.

* :func:`plot_progress` - a ``progress.png`` in the style of nnU-Net's: stacked
  panels (training and held-out loss, epoch time, learning rate, linear probe, scheme
  curves) sharing the epoch axis.
* :func:`plot_reconstruction` - one sample: input, what the network saw (masked
  cells greyed out), the reconstruction, its error and every per-voxel map a
  scheme makes (a teacher's error map, a cluster map, ...); one row per channel.

Both take plain lists / numpy arrays (convert torch tensors with
``t.detach().cpu().numpy()``) and write the PNG atomically (temp file in the same
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
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
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
MASK_COLOUR = "#ff7f0e"  # outline of masked regions
_VISIBLE_GREY = "#d9d9d9"  # error panel background where nothing is scored
_MASK_SHADE = ListedColormap([(0.0, 0.0, 0.0, 0.0), (0.05, 0.05, 0.25, 0.72)])  # visible: clear, masked: dark


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


def _save_atomic(fig: Figure, path: str, dpi: int = 100) -> None:
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
    _save_atomic(progress_figure(log, title), path)


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


# --------------------------------------------------------------------- reconstruction

ERROR_LABEL = "|reconstruction - input|\n(normalised intensity)"
PADDING_NOTE = ("uniform areas at the patch border: padding of nnU-Net's rotation/scaling augmentation, "
                "seen by the network as such")


def _middle_slice(arr: np.ndarray, n_spatial: int) -> np.ndarray:
    """For 3D data take the middle slice along the first spatial axis (the last ``n_spatial`` axes)."""
    if n_spatial == 3:
        return arr[..., arr.shape[-3] // 2, :, :]
    if n_spatial == 2:
        return arr
    raise ValueError(f"expected 2 or 3 spatial axes, got {n_spatial}")


def _limits(img: np.ndarray) -> tuple[float, float]:
    """Grey colour limits: 1st-99th percentile of ``img`` (widened if flat)."""
    lo, hi = np.percentile(img, [1, 99])
    if hi <= lo:
        lo, hi = float(img.min()), float(img.max())
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
    return float(lo), float(hi)


def _mask_edges(masked: np.ndarray) -> list[list[tuple[float, float]]]:
    """Line segments (x, y in pixel coordinates) along the borders between masked and visible pixels."""
    segs = []
    for r, c in zip(*np.nonzero(masked[:, 1:] != masked[:, :-1])):
        segs.append([(c + 0.5, r - 0.5), (c + 0.5, r + 0.5)])
    for r, c in zip(*np.nonzero(masked[1:, :] != masked[:-1, :])):
        segs.append([(c - 0.5, r + 0.5), (c + 0.5, r + 0.5)])
    return segs


def _outline(ax, visible: np.ndarray, width: float = 1.5) -> None:
    """Outline the masked regions exactly along pixel borders."""
    segs = _mask_edges(~visible)
    if segs:
        ax.add_collection(LineCollection(segs, colors=MASK_COLOUR, linewidths=width))


def _hatch(ax, masked: np.ndarray) -> None:
    """Hatch the masked pixels in the mask colour: visible on dark and bright images alike."""
    if not masked.any():
        return
    rows, cols = masked.shape
    padded = np.pad(masked.astype(float), 1)  # so that regions touching the border are closed at the pixel edge
    x, y = np.arange(-1, cols + 1), np.arange(-1, rows + 1)
    with plt.rc_context({"hatch.color": MASK_COLOUR, "hatch.linewidth": 1.2}):
        ax.contourf(x, y, padded, levels=[0.5, 1.5], colors="none", hatches=["///"])
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)


def _show_mask(ax, img: np.ndarray, visible: np.ndarray, vmin: float, vmax: float) -> None:
    """The input with masked cells tinted, hatched and outlined (what the network saw)."""
    ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.imshow((~visible).astype(float), cmap=_MASK_SHADE, vmin=0, vmax=1, interpolation="nearest")
    _hatch(ax, ~visible)
    _outline(ax, visible)


def _check_shapes(images: np.ndarray, visible: np.ndarray, reconstruction: np.ndarray,
                  maps: dict[str, np.ndarray]) -> None:
    """Raise ValueError if the arrays of one sample do not fit together."""
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be [C, H, W] or [C, D, H, W], got shape {images.shape}")
    if reconstruction.shape != images.shape:
        raise ValueError(f"reconstruction shape {reconstruction.shape} != images shape {images.shape}")
    if visible.shape != images.shape[1:]:
        raise ValueError(f"visible shape {visible.shape} != spatial shape {images.shape[1:]}")
    for name, m in maps.items():
        if m.shape != images.shape[1:]:
            raise ValueError(f"map {name!r} shape {m.shape} != spatial shape {images.shape[1:]}")


def picture_scales(images, visible, reconstruction, maps: dict | None = None) -> dict[str, list[float]]:
    """Colour scales [low, high] of a sample's error and maps, over the whole volume: a run fixes them at its
    first picture and passes them to every later one, so that pictures of different epochs compare by eye."""
    images, reconstruction = np.asarray(images, np.float32), np.asarray(reconstruction, np.float32)
    masked = ~np.asarray(visible, bool)
    error = np.abs(reconstruction - images)[:, masked]
    scales = {"error": [0.0, float(error.max()) if error.size and error.max() > 0 else 1.0]}
    for name, m in (maps or {}).items():
        m = np.asarray(m, np.float32)
        low, high = min(0.0, float(m.min())), float(m.max())
        scales[name] = [low, high if high > low else low + 1.0]
    return scales


def plot_reconstruction(images, visible, reconstruction, path: str, title: str = "", maps: dict | None = None,
                        channel_names: Sequence[str] | None = None, batch_ratio: float | None = None,
                        scales: dict | None = None) -> None:
    """Write :func:`reconstruction_figure` of one sample to ``path`` (PNG, atomically)."""
    fig = reconstruction_figure(images, visible, reconstruction, title, maps, channel_names, batch_ratio, scales)
    _save_atomic(fig, path, dpi=110)


def reconstruction_figure(images, visible, reconstruction, title: str = "", maps: dict | None = None,
                          channel_names: Sequence[str] | None = None, batch_ratio: float | None = None,
                          scales: dict | None = None) -> Figure:
    """A picture of one masked-image-modelling sample.

    Args:
        images: float [C, H, W] or [C, D, H, W], the (normalised) input of one sample.
        visible: bool [*spatial], True where the network saw the voxel, False where masked.
        reconstruction: float like ``images``, already composed (prediction in masked
            voxels, input in visible ones).
        title: figure suptitle (for 3D the slice shown is appended).
        maps: optional {title: float [*spatial]}, every per-voxel map of the scheme (e.g. "teacher
            error", 0 = not scored); each gets a panel titled with its name and its own colour bar.
        channel_names: optional name per channel for the row labels.
        batch_ratio: the masked share of the whole batch's cells, shown beside the slice's share.
        scales: {"error" or a map's name: [low, high]} colour scales, e.g. from the run's first picture
            (``picture_scales``); missing ones come from this sample.

    3D data is shown at the middle slice along the first spatial axis. One row per
    channel; columns: input, mask, reconstruction, error in masked voxels, and the
    maps. Input, mask and reconstruction share grey limits (1st-99th percentile of the
    input slice) per channel; error and maps use fixed, labelled colour scales.
    """
    images = np.asarray(images, dtype=np.float32)
    reconstruction = np.asarray(reconstruction, dtype=np.float32)
    visible = np.asarray(visible).astype(bool)
    maps = {name: np.asarray(m, dtype=np.float32) for name, m in (maps or {}).items()}
    _check_shapes(images, visible, reconstruction, maps)
    scales = {**picture_scales(images, visible, reconstruction, maps), **(scales or {})}
    n_sp = images.ndim - 1
    img, rec, vis = (_middle_slice(a, n_sp) for a in (images, reconstruction, visible))
    n_ch = img.shape[0]
    names = list(channel_names) if channel_names else [f"channel {c}" for c in range(n_ch)]
    fig = plt.figure(figsize=(14.5 + 3.6 * len(maps), 3.2 * n_ch + 1.4), layout="constrained")
    axes = _panel_grid(fig, n_ch, len(maps))
    err = np.where(vis[None], 0.0, np.abs(rec - img))
    for c in range(n_ch):
        _plot_channel_row(fig, axes[c], img[c], rec[c], vis, err[c], scales["error"], names[c], batch_ratio)
        for j, (name, m) in enumerate(maps.items()):
            _plot_map(fig, axes[c, 5 + 2 * j:7 + 2 * j], _middle_slice(m, n_sp), vis, name, scales[name])
    _finish_reconstruction(fig, axes, images.shape, title)
    return fig


def _panel_grid(fig: Figure, n_rows: int, n_maps: int) -> np.ndarray:
    """Axes [n_rows, 5 + 2 * n_maps]: input, mask, reconstruction, error, error colour bar, then each map and
    its colour bar. All image panels get the same size."""
    widths = [1, 1, 1, 1, 0.06] + [0.3, 1, 0.06] * n_maps
    gs = fig.add_gridspec(n_rows, len(widths), width_ratios=widths)
    keep = [0, 1, 2, 3, 4] + [c for j in range(n_maps) for c in (6 + 3 * j, 7 + 3 * j)]
    return np.array([[fig.add_subplot(gs[r, c]) for c in keep] for r in range(n_rows)])


def _plot_channel_row(fig: Figure, axes, img: np.ndarray, rec: np.ndarray, vis: np.ndarray, err: np.ndarray,
                      err_scale: Sequence[float], name: str, batch_ratio: float | None) -> None:
    """Input / mask / reconstruction / error (+ colour bar) panels of one channel."""
    vmin, vmax = _limits(img)
    axes[0].imshow(img, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    axes[0].set_title("input")
    _show_mask(axes[1], img, vis, vmin, vmax)
    batch = f"\nwhole batch: {100 * batch_ratio:.0f}% of cells" if batch_ratio is not None else ""
    axes[1].set_title(f"mask: {100 * (~vis).mean():.0f}% of this slice hidden{batch}")
    axes[2].imshow(rec, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    axes[2].set_title("reconstruction")
    im = axes[3].imshow(np.ma.masked_where(vis, err), cmap="magma", vmin=err_scale[0], vmax=err_scale[1],
                        interpolation="nearest")
    axes[3].set_facecolor(_VISIBLE_GREY)
    mean_err = float(err[~vis].mean()) if (~vis).any() else 0.0
    axes[3].set_title(f"error in masked voxels (mean {mean_err:.3g})")
    fig.colorbar(im, cax=axes[4], extend="max").set_label(ERROR_LABEL)
    axes[0].set_ylabel(name, fontsize=13)


def _plot_map(fig: Figure, axes, values: np.ndarray, vis: np.ndarray, name: str, scale: Sequence[float]) -> None:
    """One per-voxel map of the scheme (+ labelled colour bar) with the mask outline on top, titled by its name."""
    im = axes[0].imshow(values, cmap="viridis", vmin=scale[0], vmax=scale[1], interpolation="nearest")
    _outline(axes[0], vis, width=1.0)
    axes[0].set_title(name)
    fig.colorbar(im, cax=axes[1], extend="max").set_label(name)


def _finish_reconstruction(fig: Figure, axes, shape: tuple, title: str) -> None:
    """Hide ticks, add the suptitle (with slice info) and a legend for the mask and the padding."""
    for ax in axes[:, [0, 1, 2, 3] + list(range(5, axes.shape[1], 2))].ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if len(shape) == 4:
        where = f"middle slice {shape[1] // 2} of {shape[1]} along axis 0"
        fig.suptitle(f"{title} - {where}" if title else where, fontsize=14)
    else:
        fig.suptitle(title or "2D sample", fontsize=14)
    handles = [Patch(facecolor=_MASK_SHADE(1.0), edgecolor=MASK_COLOUR, hatch="///",
                     label="masked (hidden from the network)"),
               Patch(facecolor=_VISIBLE_GREY, edgecolor="grey", label="visible (not scored in the error)"),
               Patch(facecolor="none", edgecolor="none", label=PADDING_NOTE)]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False, fontsize=10)
