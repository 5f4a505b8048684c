"""The anatomy dataset's subjects (anatomy_dataset.py): a template under a random affine and smooth elastic
deformation, resampled to a random anisotropic spacing, with contrast, bias field and Rician noise."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from nnunet_anatomask.evaluation.anatomy_labels import Template

# --- subject generator ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Augment:
    """Ranges of the random subject transforms (all uniform)."""
    rotation_deg: float = 8.0           # per axis
    scale: tuple = (0.9, 1.1)           # per axis
    translation_mm: float = 4.0         # per axis
    elastic_mm: float = 3.0             # std of each displacement component at the control points
    elastic_grid_mm: float = 24.0       # control point spacing
    thick_slice: tuple = (1.0, 1.5)     # one random axis: spacing x this
    spacing_jitter: float = 0.05        # other axes: spacing x U(1 - j, 1 + j)
    gamma: tuple = (0.7, 1.4)
    bias_log_std: float = 0.2           # multiplicative bias exp(N(0, s)) at coarse control points
    noise: tuple = (0.01, 0.05)         # Rician noise std, fraction of the brain's 99th percentile


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    r = np.eye(3)
    for axis in range(3):
        a = np.deg2rad(rng.uniform(-max_deg, max_deg))
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != axis]
        m = np.eye(3)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        r = r @ m
    return r


def _smooth_field(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float], grid_mm: float,
                  std: float, n: int = 1) -> np.ndarray:
    """``n`` smooth random fields of ``shape``: N(0, std) at control points every ``grid_mm``, cubic upsampling."""
    coarse = [max(2, int(round(s * sp / grid_mm)) + 2) for s, sp in zip(shape, spacing)]
    out = np.empty((n, *shape), dtype=np.float32)
    for k in range(n):
        c = rng.normal(0.0, std, coarse)
        out[k] = ndimage.zoom(c, [s / cs for s, cs in zip(shape, coarse)], order=3, mode="nearest",
                              grid_mode=True)[tuple(slice(0, s) for s in shape)]
    return out


def make_subject(template: Template, spacing: float, rng: np.random.Generator, aug: Augment = Augment()):
    """One random subject: (image float32, labels uint8, spacing tuple), numpy order (z, y, x)."""
    src_sp = np.asarray(template.spacing, dtype=np.float64)
    out_sp = np.full(3, float(spacing)) * rng.uniform(1 - aug.spacing_jitter, 1 + aug.spacing_jitter, 3)
    thick = int(rng.integers(3))
    out_sp[thick] = spacing * rng.uniform(*aug.thick_slice)
    extent = np.asarray(template.image.shape) * src_sp
    out_shape = np.maximum(np.ceil(extent / out_sp).astype(int), 8)
    # output voxel -> mm around the centre -> affine + elastic -> template voxel
    a = _rotation(rng, aug.rotation_deg) @ np.diag(rng.uniform(*aug.scale, 3))
    t = rng.uniform(-aug.translation_mm, aug.translation_mm, 3)
    grid = np.stack(np.meshgrid(*[(np.arange(n) + 0.5) * s - n * s / 2 for n, s in zip(out_shape, out_sp)],
                                indexing="ij")).reshape(3, -1)
    disp = _smooth_field(rng, out_shape, out_sp, aug.elastic_grid_mm, aug.elastic_mm, 3).reshape(3, -1)
    src_mm = a @ grid + t[:, None] + disp + (extent / 2)[:, None]
    coords = (src_mm / src_sp[:, None] - 0.5).reshape(3, *out_shape)
    # anti-alias: blur the template by the output/template spacing ratio before sampling
    sigma = np.maximum(out_sp / src_sp - 1.0, 0.0) * 0.5
    img = ndimage.gaussian_filter(template.image, sigma) if sigma.any() else template.image
    image = ndimage.map_coordinates(img, coords, order=1, mode="constant", cval=0.0).astype(np.float32)
    labels = ndimage.map_coordinates(template.labels, coords, order=0, mode="constant", cval=0).astype(np.uint8)
    # intensities: [0, 1] by the brain's 99th percentile, gamma, smooth bias, Rician noise, then 0..1000
    ref = float(np.percentile(template.image[template.image > 0], 99))
    x = np.clip(image / ref, 0, None) ** rng.uniform(*aug.gamma)
    x *= np.exp(_smooth_field(rng, out_shape, out_sp, 60.0, aug.bias_log_std)[0])
    sd = rng.uniform(*aug.noise)
    x = np.sqrt((x + rng.normal(0, sd, x.shape)) ** 2 + rng.normal(0, sd, x.shape) ** 2)
    return (1000.0 * x).astype(np.float32), labels, tuple(float(s) for s in out_sp)
