"""SelfMedHPM's loss predictor (ours on CNNs: HPM's is a second ViT decoder; docs/selfmedhpm.md)."""
import torch
import torch.nn.functional as F
from torch import nn

from nnunet_anatomask.pretraining.grid import MaskGrid


class CellLossPredictor(nn.Module):
    """One predicted loss per mask cell from the decoder's features at cell resolution (ours, docs/selfmedhpm.md).

    Every decoder stage's output is average-pooled (finer stages) or repeated (coarser stages) onto the cell grid,
    the stages are concatenated per cell, and a LayerNorm + 2-layer MLP maps them to one value (HPM's predictor
    ends in LayerNorm + Linear, averaged over the patch: ``decoder_pred_losspred(...).mean(-1)``).
    """

    def __init__(self, decoder_channels: list[int], grid: MaskGrid, hidden: int = 128):
        super().__init__()
        self.cells = grid.cells_per_axis
        self.pool = F.adaptive_avg_pool3d if grid.ndim == 3 else F.adaptive_avg_pool2d
        width = sum(decoder_channels)
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def cell_features(self, decoder_features: list[torch.Tensor]) -> torch.Tensor:
        """Decoder stage outputs ``[B, C_s, *spatial_s]`` -> ``[B, N, sum C_s]``: each stage's mean over every cell
        (a stage coarser than the cells: its value repeated), cells in the grid's row-major order."""
        pooled = torch.cat([self.pool(f, self.cells) for f in decoder_features], dim=1)  # [B, sum C, *cells]
        return pooled.flatten(2).transpose(1, 2)

    def forward(self, decoder_features: list[torch.Tensor]) -> torch.Tensor:
        """Decoder stage outputs (coarse to fine) -> predicted losses ``[B, N]``."""
        return self.mlp(self.cell_features(decoder_features)).squeeze(-1)
