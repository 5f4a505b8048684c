"""MAE's layer-wise learning-rate decay for Primus (He et al., CVPR 2022, fine-tuning; ``util/lr_decay.py``).

With L transformer blocks, layer ids run 0..L+1: the patch embedding and position embedding are 0, block i is
i + 1, everything after the blocks (final norm, patch decoder) is L + 1; a parameter's lr is scaled by
decay ** (L + 1 - id). MAE also exempts biases and norms from weight decay; we keep nnU-Net's Primus weight decay
on every parameter (ours: the recipe changes one thing).
"""
from __future__ import annotations

import re
from typing import Iterable

from torch import nn

_BLOCK = re.compile(r"^eva\.blocks\.(\d+)\.")
_EMBEDDING = ("down_projection.", "eva.pos_embed", "eva.cls_token")


def layer_id(name: str, num_blocks: int) -> int:
    """MAE's ``get_layer_id_for_vit`` for Primus' parameter names."""
    if name.startswith(_EMBEDDING):
        return 0
    m = _BLOCK.match(name)
    return int(m.group(1)) + 1 if m else num_blocks + 1


def layer_groups(network: nn.Module, names: Iterable[str], decay: float) -> list[dict]:
    """Parameter groups with ``lr_scale`` = decay ** (L + 1 - id), the unscaled group first (its lr is logged)."""
    blocks = len(network.eva.blocks)
    params = dict(network.named_parameters())
    groups: dict[int, list] = {}
    for name in names:
        groups.setdefault(layer_id(name, blocks), []).append(params[name])
    return [{"params": groups[i], "lr_scale": decay ** (blocks + 1 - i), "layer_id": i}
            for i in sorted(groups, reverse=True)]
