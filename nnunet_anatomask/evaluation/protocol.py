"""The evaluation sizes: data, configuration, budget and label fractions of one ``--size``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nnunet_anatomask.evaluation.plans import capped_plans_name

DEFAULT_FRACTIONS = (0.1, 0.25, 1.0)


@dataclass(frozen=True)
class Size:
    """One budget. Iterations per stage = epochs x iters_per_epoch (the plugin's knobs)."""
    name: str
    data: str                      # 'synthetic' (example_data) or 'anatomy' (anatomy_dataset)
    dataset_id: int
    dataset_name: str
    num_train: int
    num_test: int
    num_val: int                   # fixed validation cases (training images, never in a labelled fraction)
    configuration: str
    spacing: float = 2.0           # anatomy: base voxel spacing in mm
    max_features: Optional[int] = None   # cap on features_per_stage (None: nnUNetPlans as planned)
    max_batch_size: Optional[int] = None
    pretrain_epochs: int = 1000
    finetune_epochs: int = 1000
    iters_per_epoch: int = 250
    save_every: int = 50
    fractions: tuple = DEFAULT_FRACTIONS
    note: str = ""

    @property
    def plans_name(self) -> str:
        return capped_plans_name(self.max_features, self.max_batch_size)

    @property
    def dataset(self) -> str:
        return f"Dataset{self.dataset_id:03d}_{self.dataset_name}"


SIZES = {
    "tiny": Size("tiny", "synthetic", 980, "EvalTiny", num_train=8, num_test=4, num_val=2, configuration="2d",
                 max_features=16, max_batch_size=4, pretrain_epochs=1, finetune_epochs=1, iters_per_epoch=2,
                 save_every=1, fractions=(0.25, 1.0),
                 note="smoke run: generated ellipsoids, 1 epoch x 2 iterations per stage, 2 label fractions (each "
                      "fraction costs 3 nnUNetv2_train calls); its numbers mean nothing"),
    "cpu": Size("cpu", "anatomy", 981, "BrainAnatomy", num_train=40, num_test=20, num_val=4, configuration="2d",
                spacing=2.0, max_features=64, max_batch_size=16, pretrain_epochs=40, finetune_epochs=12,
                iters_per_epoch=25, save_every=4,
                note="brains at 2 mm, 2d configuration, widths capped at 64 and batch at 16 (a 2-core CPU), "
                     "1000 stage-1 and 300 stage-2 iterations"),
    "gpu": Size("gpu", "anatomy", 982, "BrainAnatomy1mm", num_train=100, num_test=30, num_val=10,
                configuration="3d_fullres", spacing=1.0, pretrain_epochs=1000, finetune_epochs=250,
                iters_per_epoch=250, save_every=50,
                note="brains at 1 mm, 3d_fullres with nnUNetPlans as planned, 250k stage-1 and 62.5k stage-2 "
                     "iterations per run"),
}
