"""The stage-1 picture of an epoch: the middle slice of the first sample of the epoch's last step (input, mask,
reconstruction, every per-cell map of the scheme), on colour scales fixed at the run's first picture."""
import os

import torch

from nnunet_anatomask.reconstruction_plot import picture_scales, plot_reconstruction
from nnunet_anatomask.pretraining.grid import MaskGrid
from nnunet_anatomask.pretraining.losses import to_image_space
from nnunet_anatomask.pretraining.schemes.base import Picture


def save_picture(picture: Picture, grid: MaskGrid, path: str, title: str, channel_names: list[str],
                 scales: dict) -> dict:
    """Write the picture to ``path``; returns the colour scales to keep (``scales`` first, this picture's after).
    A scheme without a mask or a prediction (a contrastive one) shows its input as seen and its maps."""
    images, cell_mask = picture.images, picture.cell_mask
    if cell_mask is None:
        visible = torch.ones(images.shape[2:], dtype=torch.bool, device=images.device)
    else:
        visible = ~grid.to_voxels(cell_mask.view(-1, *grid.cells_per_axis))[0, 0]
    recon = images[0] if picture.prediction is None else \
        torch.where(visible, images[0], to_image_space(picture.prediction, images, grid)[0])
    sample = (images[0].float().cpu().numpy(), visible.cpu().numpy(), recon.float().cpu().numpy())
    maps = {name: grid.cell_values_to_voxels(m)[0, 0].float().cpu().numpy() for name, m in picture.maps.items()}
    scales = {**picture_scales(*sample, maps), **scales}
    batch_ratio = 0.0 if cell_mask is None else float(cell_mask.float().mean())
    plot_reconstruction(*sample, path, title=title, maps=maps, channel_names=channel_names, batch_ratio=batch_ratio,
                        scales=scales)
    return scales


def picture_path(folder: str, epoch: int) -> str:
    return os.path.join(folder, f"reconstruction_epoch_{epoch:04d}.png")
