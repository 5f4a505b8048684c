"""Tests for nnunet_anatomask.plotting: files are written, are PNGs and have a sensible size."""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest

import matplotlib.pyplot as plt

from nnunet_anatomask.plotting import plot_progress, progress_figure
from nnunet_anatomask.reconstruction_plot import plot_reconstruction, reconstruction_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: str) -> tuple[int, int]:
    """(width, height) of a PNG, asserting the signature."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def assert_png(path: str, min_w: int = 300, min_h: int = 200) -> tuple[int, int]:
    """The file exists, is a PNG of at least min_w x min_h, and no temp file was left behind."""
    assert os.path.isfile(path)
    w, h = png_size(path)
    assert min_w <= w <= 5000 and min_h <= h <= 5000, (w, h)
    leftovers = [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".tmp_")]
    assert not leftovers, leftovers
    return w, h


def make_sample(spatial: tuple[int, ...], channels: int, seed: int = 0):
    """images, visible (grid mask of 4-voxel cells), composed reconstruction, error map."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(channels, *spatial)).astype(np.float32)
    cells = rng.random([max(s // 4, 1) for s in spatial]) > 0.6
    visible = cells
    for ax in range(len(spatial)):
        visible = np.repeat(visible, 4, axis=ax)
    visible = visible[tuple(slice(0, s) for s in spatial)]
    pred = images + 0.3 * rng.normal(size=images.shape)
    recon = np.where(visible[None], images, pred).astype(np.float32)
    error_map = np.where(visible, 0.0, rng.random(spatial)).astype(np.float32)
    return images, visible, recon, error_map


@pytest.mark.parametrize("spatial", [(16, 16), (8, 16, 16)], ids=["2d", "3d"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("with_map", [False, True], ids=["no_map", "map"])
def test_plot_reconstruction(tmp_path, spatial, channels, with_map):
    images, visible, recon, emap = make_sample(spatial, channels)
    path = str(tmp_path / "rec.png")
    plot_reconstruction(images, visible, recon, path, title="t",
                        maps={"teacher error": emap} if with_map else None,
                        channel_names=[f"ch{c}" for c in range(channels)])
    w, h = assert_png(path)
    assert w > h  # one row per channel, 4-5 columns


def test_reconstruction_more_rows_for_more_channels(tmp_path):
    sizes = []
    for c in (1, 2):
        images, visible, recon, _ = make_sample((8, 16, 16), c)
        path = str(tmp_path / f"rec{c}.png")
        plot_reconstruction(images, visible, recon, path)
        sizes.append(png_size(path))
    assert sizes[1][1] > sizes[0][1]


def test_reconstruction_edge_cases(tmp_path):
    """All visible, all masked, constant image: still a picture."""
    images = np.ones((1, 4, 8, 8), np.float32)
    for i, vis in enumerate([np.ones((4, 8, 8), bool), np.zeros((4, 8, 8), bool)]):
        path = str(tmp_path / f"edge{i}.png")
        plot_reconstruction(images, vis, images, path, maps={"teacher error": np.zeros((4, 8, 8))})
        assert_png(path)


def test_every_map_is_drawn_with_its_name_as_title():
    """Catches: drawing only one map (the old "teacher error" lookup) or titling panels with a fixed name."""
    images, visible, recon, emap = make_sample((8, 16, 16), 2)
    maps = {"teacher error": emap, "cluster map": np.where(visible, 1.0, 0.0), "predicted loss": emap * 2}
    fig = reconstruction_figure(images, visible, recon, maps=maps)
    titles = [ax.get_title() for ax in fig.axes]
    for name in maps:
        assert titles.count(name) == 2, (name, titles)  # one panel per channel row
    plt.close(fig)


def test_reconstruction_rejects_bad_shapes(tmp_path):
    images, visible, recon, _ = make_sample((8, 8), 1)
    with pytest.raises(ValueError):
        plot_reconstruction(images, visible[:4], recon, str(tmp_path / "x.png"))
    with pytest.raises(ValueError):
        plot_reconstruction(images, visible, recon[:, :4], str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="map 'm'"):
        plot_reconstruction(images, visible, recon, str(tmp_path / "x.png"), maps={"m": np.zeros((4, 4))})


def make_log(n: int, scheme: bool = True) -> dict[str, list[float]]:
    """A per-epoch log with n epochs."""
    log = {"loss": list(np.linspace(1, 0.2, n)), "lr": list(np.linspace(1e-2, 1e-4, n)),
           "epoch_time": [30.0] * n}
    if scheme:
        log.update(mask_ratio=list(np.linspace(0.3, 0.7, n)), alpha=list(np.linspace(0, 1, n)),
                   teacher_error=[None] + [2.0] * (n - 1))
    return log


@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("scheme", [False, True])
def test_plot_progress(tmp_path, n, scheme):
    path = str(tmp_path / "sub" / "progress.png")
    plot_progress(make_log(n, scheme), path, title="demo")
    w, h = assert_png(path, min_h=400)
    assert h > w * 0.7  # stacked panels


def test_plot_progress_overwrites(tmp_path):
    path = str(tmp_path / "progress.png")
    plot_progress(make_log(2), path)
    first = os.path.getsize(path)
    plot_progress(make_log(5), path)
    assert os.path.getsize(path) != first
    assert_png(path)


def test_heldout_loss_beside_the_training_loss_and_the_probe_in_its_own_panel():
    """The held-out loss is a curve of the loss panel; the probe's Dice, logged every other epoch (NaN between), is
    one line through its logged epochs in a panel of its own, with the reference lines; times share the time panel.
    Catches: the held-out loss or probe keys left to the scheme panels, a sparse curve drawn as isolated NaN gaps."""
    nan = float("nan")
    log = {**make_log(4, scheme=True), "heldout_loss": [0.9, 0.8, 0.85, 0.7], "heldout_time": [1.0] * 4,
           "probe_dice": [nan, 0.5, nan, 0.6], "probe_dice_at_init": [nan, 0.4, nan, 0.4],
           "probe_chance": [nan, 0.1, nan, 0.1], "probe_time": [nan, 5.0, nan, 5.0]}
    axes = progress_figure(log).axes
    labels = [[line.get_label() for line in ax.get_lines()] for ax in axes]
    assert labels[0] == ["training loss", "held-out loss"]
    assert labels[1] == ["epoch duration (steps)", "held-out loss", "linear probe"]
    assert axes[3].get_ylabel() == "linear probe Dice"
    assert labels[3] == ["validation Dice", "at initialisation", "chance (all foreground)"]
    assert list(axes[3].get_lines()[0].get_xdata()) == [1, 3]
    assert not any("probe" in label or "heldout" in label for panel in labels[4:] for label in panel)
