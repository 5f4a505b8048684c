"""The evaluation sizes: data, configuration, budget, label fractions, seeds and what a run costs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from nnunet_anatomask.evaluation.plans import capped_plans_name


@dataclass(frozen=True)
class Cost:
    """Seconds per piece of a run, for the estimate printed before it starts (``estimate.py``)."""
    data_and_plan_s: float
    stage2_iteration_s: float          # one stage-2 iteration, nnU-Net's validation patches included
    stage2_overhead_s: float           # one stage-2 run's start-up, checkpoints and final validation
    predict_s: float                   # predicting and evaluating the test images with one trained fold
    stage1_ratio: dict = field(default_factory=dict)   # stage-1 / stage-2 iteration time, per scheme
    stage1_ratio_other: float = 1.5    # for a scheme not listed
    source: str = ""


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
    cost: Cost
    spacing: float = 2.0           # anatomy: base voxel spacing in mm
    max_features: Optional[int] = None   # cap on features_per_stage (None: nnUNetPlans as planned)
    max_batch_size: Optional[int] = None
    pretrain_epochs: int = 1000
    finetune_epochs: int = 1000
    iters_per_epoch: int = 250
    save_every: int = 50
    fractions: tuple = (0.05, 0.25, 1.0)
    seeds: tuple = (0, 1, 2)
    threads: Optional[int] = None  # torch CPU threads per training process (None: torch's default)
    jobs: int = 1                  # training processes side by side
    note: str = ""
    channel_name: str = "T1"       # the labelled dataset's channel (a pool's sources must name theirs the same)
    pool_id: Optional[int] = None  # pool sizes: stage 1 on this unlabelled pool (pool_dataset.py), ids after it
    pool_name: str = "BrainPool"   # are its sources
    pool_cases: int = 0            # unlabelled cases in the pool, spread over the sources found

    @property
    def plans_name(self) -> str:
        return capped_plans_name(self.max_features, self.max_batch_size)

    @property
    def dataset(self) -> str:
        return f"Dataset{self.dataset_id:03d}_{self.dataset_name}"

    @property
    def pool_dataset(self) -> Optional[str]:
        return f"Dataset{self.pool_id:03d}_{self.pool_name}" if self.pool_id is not None else None

    @property
    def pretrain_iterations(self) -> int:
        return self.pretrain_epochs * self.iters_per_epoch

    @property
    def finetune_iterations(self) -> int:
        return self.finetune_epochs * self.iters_per_epoch


CPU_STAGE1_RATIO = {"RandomMask": 1.15, "AnatoMask": 1.5}  # docs/performance.md, 2-core CPU

SIZES = {
    "tiny": Size("tiny", "synthetic", 980, "EvalTiny", num_train=8, num_test=4, num_val=2, configuration="2d",
                 max_features=16, max_batch_size=4, pretrain_epochs=1, finetune_epochs=4, iters_per_epoch=2,
                 save_every=1, fractions=(0.5,), seeds=(0, 1), threads=1, jobs=2,
                 cost=Cost(40, 0.05, 12, 3, CPU_STAGE1_RATIO, source="measured, 2-core CPU"),
                 note="smoke run: generated ellipsoids, 1 (stage 1) and 4 (stage 2: one per phase of the longest "
                      "recipe) epochs x 2 iterations, one label fraction x 2 seeds; its numbers mean nothing"),
    "tiny-pool": Size("tiny-pool", "synthetic", 978, "EvalTinyPool", num_train=8, num_test=4, num_val=2,
                      configuration="2d", max_features=16, max_batch_size=4, pretrain_epochs=1, finetune_epochs=1,
                      iters_per_epoch=2, save_every=1, fractions=(0.5,), seeds=(0, 1), threads=1, jobs=2,
                      channel_name="MRI", pool_id=975, pool_cases=6,
                      cost=Cost(80, 0.05, 12, 3, CPU_STAGE1_RATIO, source="guessed from --size tiny"),
                      note="smoke run of the pool path: two generated image-only pool sources planned as one pool "
                           "(--as), stage 1 on it, plans moved, nnUNetTrainerFinetune; its numbers mean nothing"),
    "cpu": Size("cpu", "anatomy", 981, "BrainAnatomy", num_train=40, num_test=20, num_val=4, configuration="2d",
                spacing=4.0, max_features=32, max_batch_size=16, pretrain_epochs=40, finetune_epochs=30,
                iters_per_epoch=50, save_every=5, fractions=(0.05, 1.0), seeds=(0, 1, 2), threads=1, jobs=2,
                cost=Cost(90, 0.26, 40, 20, CPU_STAGE1_RATIO,
                          source="CPU seconds measured on a 2-core CPU, i.e. the wall time when nothing else runs"),
                note="brains at 4 mm, 2d configuration, widths capped at 32 and batch at 16, one torch thread "
                     "per run (a 2-core CPU)"),
    "cpu-pool": Size("cpu-pool", "anatomy", 983, "BrainAnatomyFew", num_train=8, num_test=20, num_val=4,
                     configuration="2d", spacing=4.0, max_features=32, max_batch_size=16, pretrain_epochs=40,
                     finetune_epochs=30, iters_per_epoch=50, save_every=5, fractions=(0.25, 1.0),
                     seeds=(0, 1, 2, 3, 4), threads=1, jobs=2, channel_name="MRI", pool_id=970, pool_cases=96,
                     cost=Cost(300, 0.26, 40, 20, CPU_STAGE1_RATIO,
                               source="CPU seconds of --size cpu's pieces on a 2-core CPU (the same network, "
                                      "spacing and run lengths); data + pool planning guessed"),
                     note="stage 1 on an unlabelled pool of every real brain scan installed (96 cases, several "
                          "sources, pool_dataset.py) planned with nnUNetv2_plan_and_preprocess_unlabelled --as; "
                          "plans moved to a labelled set of 4 brains (+ 4 validation), fine-tuned by "
                          "nnUNetTrainerFinetune on 1 and 4 of them; otherwise as --size cpu"),
    "gpu": Size("gpu", "anatomy", 982, "BrainAnatomy1mm", num_train=100, num_test=30, num_val=10,
                configuration="3d_fullres", spacing=1.0, pretrain_epochs=1000, finetune_epochs=250,
                iters_per_epoch=250, save_every=50, fractions=(0.05, 0.25, 1.0), seeds=(0, 1, 2),
                cost=Cost(1800, 0.2, 600, 120, {}, 1.5,
                          source="ASSUMED, not measured (no GPU here): nnU-Net 3d_fullres at ~0.2 s an iteration"),
                note="brains at 1 mm, 3d_fullres with nnUNetPlans as planned"),
}
