"""pretraining/blobs.py: closed-form eigenvalues against torch's solver, and the blob strength's known answers on a
blob, an edge and a tube (docs/amlp.md). Each docstring names the mutation the test catches."""
import pytest
import torch

from nnunet_anatomask.pretraining import blobs


def as_table(matrices: torch.Tensor) -> list[list[torch.Tensor]]:
    n = matrices.shape[-1]
    return [[matrices[..., i, j] for j in range(n)] for i in range(n)]


@pytest.mark.parametrize("n", [2, 3])
def test_closed_form_eigenvalues_equal_torchs(n):
    """Random symmetric matrices and a diagonal one with a repeated eigenvalue. Catches: a wrong root of the
    cubic (the middle eigenvalue from the trace), an unsorted result, a sign error in the determinant."""
    torch.manual_seed(0)
    m = torch.randn(1000, n, n)
    m = m + m.transpose(-1, -2)
    torch.testing.assert_close(blobs.symmetric_eigenvalues(as_table(m)), torch.linalg.eigvalsh(m),
                               atol=1e-4, rtol=1e-4)
    diagonal = torch.diag(torch.tensor([3.0, -1.0, 3.0][:n]))[None]
    expected = torch.tensor([-1.0, 3.0, 3.0][:n])
    torch.testing.assert_close(blobs.symmetric_eigenvalues(as_table(diagonal))[0], expected, atol=1e-5, rtol=0)


def test_hessian_of_a_quadratic():
    """f = x0² + 2 x1 x2 on a 9³ grid: H = [[2, 0, 0], [0, 0, 2], [0, 2, 0]] inside. Catches: the mixed derivative
    taken along the wrong axis, a missing factor 1/2 in the central difference."""
    x0, x1, x2 = torch.meshgrid(*[torch.arange(9.0)] * 3, indexing="ij")
    h = blobs.hessian((x0 ** 2 + 2 * x1 * x2)[None, None])
    expected = [[2.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 2.0, 0.0]]
    for i in range(3):
        for j in range(3):
            torch.testing.assert_close(h[i][j][0, 0, 2:-2, 2:-2, 2:-2], torch.full((5, 5, 5), expected[i][j]))


def shapes(size: int = 17) -> dict[str, torch.Tensor]:
    """A Gaussian blob (sigma 1.5) at the centre, a dark one, a planar step edge and a tube along axis 0."""
    c = (size - 1) / 2
    z, y, x = torch.meshgrid(*[torch.arange(float(size))] * 3, indexing="ij")
    blob = torch.exp(-((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2) / (2 * 1.5 ** 2))
    return {"bright blob": blob, "dark blob": -blob, "edge": (x > c).float(),
            "tube": torch.exp(-((y - c) ** 2 + (x - c) ** 2) / (2 * 1.5 ** 2))}


def test_blob_strength_fires_on_blobs_not_on_edges_or_tubes():
    """Bright and dark blobs score the same, peaking at their centre; a step edge and a tube score (numerically)
    0 everywhere, at every scale. Catches: the largest instead of the smallest eigenvalue magnitude (fires on
    edges and tubes), no definiteness test (saddles count), a sign-specific measure (dark lesions missed)."""
    found = {name: [blobs.blob_strength(image[None, None], sigma)[0, 0] for sigma in (1.0, 1.5, 2.0)]
             for name, image in shapes().items()}
    for bright, dark in zip(found["bright blob"], found["dark blob"]):
        torch.testing.assert_close(bright, dark)
        assert bright.argmax().item() == 8 * 17 * 17 + 8 * 17 + 8 and bright.max() > 0.05
    peak = min(b.max().item() for b in found["bright blob"])
    for name in ("edge", "tube"):
        assert max(b.max().item() for b in found[name]) < 1e-3 * peak, name


def test_blob_strength_in_2d_and_per_channel():
    """A 2D disc in channel 0 and nothing in channel 1: channels stay separate. Catches: channels mixed by the
    separable smoothing (a conv without groups)."""
    y, x = torch.meshgrid(*[torch.arange(15.0)] * 2, indexing="ij")
    disc = torch.exp(-((y - 7) ** 2 + (x - 7) ** 2) / 2.0)
    strength = blobs.blob_strength(torch.stack([disc, torch.zeros_like(disc)])[None], 1.0)
    assert strength.shape == (1, 2, 15, 15)
    assert strength[0, 0].argmax().item() == 7 * 15 + 7 and strength[0, 0].max() > 0.05
    assert strength[0, 1].abs().max() == 0


def test_blob_strength_known_answers_on_quadratics():
    """f = x0² + x1² + x2²: H = 2 I everywhere (Gaussian smoothing adds a constant), a dark blob: strength
    sigma² * 2 inside the grid. f = x0² - x1² + x2²: a saddle (eigenvalues -2, 2, 2): strength 0. Catches: no
    definiteness test (saddles would score sigma² * 2), a missing sigma² normalisation."""
    x0, x1, x2 = torch.meshgrid(*[torch.arange(21.0) - 10] * 3, indexing="ij")
    inside = (slice(None), slice(None)) + (slice(8, 13),) * 3
    for sigma in (1.0, 2.0):
        bowl = blobs.blob_strength((x0 ** 2 + x1 ** 2 + x2 ** 2)[None, None], sigma)[inside]
        torch.testing.assert_close(bowl, torch.full_like(bowl, 2 * sigma ** 2), rtol=1e-3, atol=1e-3)
        saddle = blobs.blob_strength((x0 ** 2 - x1 ** 2 + x2 ** 2)[None, None], sigma)[inside]
        assert saddle.abs().max() == 0
