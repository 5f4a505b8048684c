"""Blob strength: how strongly each voxel is the centre of a small, compact bright or dark spot (AMLP's lesion-like
cells, docs/amlp.md).

The classic Hessian blob measure (Lindeberg, *Feature detection with automatic scale selection*, IJCV 1998; the
eigenvalue analysis of Frangi et al., MICCAI 1998): smooth the image with a Gaussian of scale sigma, take the Hessian
H at every voxel; at the centre of a bright blob all eigenvalues of H are negative, of a dark blob all positive. On
an edge only one eigenvalue is large, along a tube (a vessel, a bone rod) one stays near 0. So the blob strength
is sigma² min_i |lambda_i| where all eigenvalues share a sign, else 0 (ours: the smallest magnitude, which is 0 on
edges and tubes; the sigma² factor makes scales comparable, as Lindeberg's normalised derivatives). Batched tensor
code for 2D and 3D, eigenvalues in closed form (no per-voxel solver), float32.
"""
import math

import torch
import torch.nn.functional as F


def gaussian_smooth(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """``[B, C, *spatial]`` smoothed by a separable Gaussian of ``sigma`` voxels (truncated at 3 sigma, edges
    replicated)."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32)
    kernel = torch.exp(-taps.square() / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    ndim, channels = images.ndim - 2, images.shape[1]
    conv = F.conv3d if ndim == 3 else F.conv2d
    out = images.float()
    for axis in range(ndim):
        taps_shape = [1] * ndim
        taps_shape[axis] = kernel.numel()
        weight = kernel.view(1, 1, *taps_shape).expand(channels, 1, *taps_shape)
        padding = [0] * (2 * ndim)
        padding[2 * (ndim - 1 - axis)] = padding[2 * (ndim - 1 - axis) + 1] = radius  # F.pad: last axis first
        out = conv(F.pad(out, padding, mode="replicate"), weight, groups=channels)
    return out


def central_difference(images: torch.Tensor, dim: int) -> torch.Tensor:
    """(x[i + 1] - x[i - 1]) / 2 along ``dim``, edges replicated (so half a one-sided difference there)."""
    n = images.shape[dim]
    after = torch.cat([images.narrow(dim, 1, n - 1), images.narrow(dim, n - 1, 1)], dim)
    before = torch.cat([images.narrow(dim, 0, 1), images.narrow(dim, 0, n - 1)], dim)
    return (after - before) / 2


def hessian(images: torch.Tensor) -> list[list[torch.Tensor]]:
    """Second derivatives by central differences: ``[B, C, *spatial]`` -> the symmetric ``ndim x ndim`` table of
    ``[B, C, *spatial]`` maps (entry [i][j] = d²/dx_i dx_j; [j][i] is the same tensor)."""
    axes = range(2, images.ndim)
    first = [central_difference(images, axis) for axis in axes]
    table = [[None] * len(axes) for _ in axes]
    for i, derivative in enumerate(first):
        for j in range(i, len(axes)):
            table[i][j] = table[j][i] = central_difference(derivative, 2 + j)
    return table


def symmetric_eigenvalues(h: list[list[torch.Tensor]]) -> torch.Tensor:
    """Eigenvalues of symmetric 2x2 or 3x3 matrices given as a table of element maps (``hessian``), ascending,
    stacked on a new last axis; in closed form, element-wise (3x3: the trigonometric solution of the characteristic
    cubic, Smith, Comm. ACM 4(4), 1961)."""
    if len(h) == 2:
        (a, b), (_, d) = h
        centre, radius = 0.5 * (a + d), torch.sqrt(0.25 * (a - d).square() + b.square())
        return torch.stack([centre - radius, centre + radius], dim=-1)
    (a, b, c), (_, d, e), (_, _, f) = h
    q = (a + d + f) / 3
    a, d, f = a - q, d - q, f - q  # the matrix minus q I: trace 0
    p = torch.sqrt((a.square() + d.square() + f.square() + 2 * (b.square() + c.square() + e.square())) / 6)
    p = p.clamp_min(1e-12)
    det = a * (d * f - e.square()) - b * (b * f - c * e) + c * (b * e - c * d)
    phi = torch.acos((det / (2 * p ** 3)).clamp(-1.0, 1.0)) / 3
    largest = q + 2 * p * torch.cos(phi)
    smallest = q + 2 * p * torch.cos(phi + 2 * math.pi / 3)
    return torch.stack([smallest, 3 * q - largest - smallest, largest], dim=-1)


def blob_strength(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """``[B, C, *spatial]`` -> ``[B, C, *spatial]``: sigma² min_i |lambda_i(H)| where the Hessian of the image
    smoothed at ``sigma`` is definite (all eigenvalues of one sign: a bright or a dark blob), else 0."""
    eigenvalues = symmetric_eigenvalues(hessian(gaussian_smooth(images, sigma)))
    definite = (eigenvalues[..., -1] < 0) | (eigenvalues[..., 0] > 0)
    return torch.where(definite, eigenvalues.abs().amin(-1), 0.0) * sigma ** 2
