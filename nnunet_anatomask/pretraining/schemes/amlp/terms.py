"""AMLP's attention reconstruction loss (ARL) and category consistency loss (CCL), as functions of per-cell losses.
Every formula is ours, faithful to the paper's abstract (arXiv 2309.04312; no official code): docs/amlp.md."""
import torch

from nnunet_anatomask.pretraining import clustering, losses


def arl_weights(errors: torch.Tensor, cell_mask: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """ARL weights ``[B, N]`` on the masked cells of each sample b (0 elsewhere), and the softmax p (ours):
    p_bi = softmax_i(l_bi / (tau mean_b(l))) over masked i, w_bi = M_b p_bi, from detached losses l. Equal
    losses give w = 1, so sum(w l m) / sum(m) is then exactly the masked MSE: ARL has MSE's scale."""
    detached = errors.detach()
    mask_f = cell_mask.to(detached.dtype)
    count = mask_f.sum(1, keepdim=True).clamp_min(1.0)
    mean = (detached * mask_f).sum(1, keepdim=True) / count
    logits = (detached / (temperature * mean.clamp_min(1e-12))).masked_fill(~cell_mask, float("-inf"))
    p = logits.softmax(1)
    return p * count, p


def weight_entropy(p: torch.Tensor, cell_mask: torch.Tensor) -> torch.Tensor:
    """Entropy of each sample's ARL softmax over its M_b masked cells / log M_b, averaged (1 = uniform = MSE)."""
    plogp = torch.where(p > 0, p * p.clamp_min(1e-30).log(), 0.0).sum(1)
    return (-plogp / cell_mask.sum(1).to(p.dtype).clamp_min(2.0).log()).mean()


def hard_cells(errors: torch.Tensor, cell_mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """Reconstruction difficulty ``[B, N]`` (bool): 2-means on each sample's masked per-cell losses, started at
    their min and max; hard = nearer the higher centroid (ours). Equal losses: no cell is hard."""
    points = errors.detach().float().unsqueeze(-1)                              # [B, N, 1]
    visible = ~cell_mask.unsqueeze(-1)
    start = torch.cat([points.masked_fill(visible, float("inf")).amin(1, keepdim=True),
                       points.masked_fill(visible, float("-inf")).amax(1, keepdim=True)], 1)
    _, assignment = clustering.kmeans(points, start, iterations, valid=cell_mask)
    return (assignment == 1) & cell_mask


def consistency_loss(q: torch.Tensor, hard: torch.Tensor, cell_mask: torch.Tensor) -> torch.Tensor:
    """CCL = sum_i m_i (q_i - h_i)^2 / sum_i m_i over the masked cells, h_i = 1 for hard cells (ours): 0 when
    every masked cell's category agrees with its difficulty (lesion-like <-> hard)."""
    return losses.masked_mean((q - hard.to(q.dtype)).square(), cell_mask)
