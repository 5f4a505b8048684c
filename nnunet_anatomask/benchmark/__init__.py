"""Stage-1 cost against nnU-Net's own supervised train step, in one process, on the same device, patch and batch.

    python -m nnunet_anatomask.benchmark --synthetic tiny --device cpu            # CI size, seconds on a CPU
    python -m nnunet_anatomask.benchmark --synthetic h100 --device cuda           # the reference size
    python -m nnunet_anatomask.benchmark --dataset 990 --configuration 3d_fullres  # real plans + data loading

Rows: nnU-Net's `nnUNetTrainer.train_step` on a fixed batch (compiled where nnU-Net compiles: CUDA with
nnUNet_compile unset or true), then one stage-1 optimiser step (`Stage1Runner.train_step`) per scheme in SCHEMES,
at the last epoch (AnatoMask's teacher runs, alpha = 0.5); a scheme whose loader crops are larger than the patch
(crop_scale, e.g. GL-MAE) gets a batch of that size. Every row is built and warmed up (--warmup steps)
inside its own memory window; then the rows take turns, step by step, for --steps steps each, and each reports
its median (the device synchronised after every step). Peak memory, over what was allocated before the row was
built: CUDA max_memory_allocated; CPU the peak resident set size (VmHWM). With --dataset also the end-to-end
it/s with nnU-Net's data loader (stage 1: stage1_batches) against the step-only it/s. A second table splits off,
per scheme and again taking turns, the costs that are ours: select_mask (of which AnatoMask's teacher forward),
loss + logged figures (both for schemes with the default step), on_step_end (teacher EMA) and the masked-forward
emulation (masked forward + backward minus the same network's dense forward + backward).
--explain runs torch._dynamo.explain on the masked model's forward (graph breaks) and checks that a new mask
does not recompile. Nothing is written outside a temporary folder except --output.
"""
from nnunet_anatomask.benchmark.cli import build_parser, main, parse_args
from nnunet_anatomask.benchmark.sources import SIZES, scratch_env, synthetic_plans

__all__ = ["SIZES", "build_parser", "main", "parse_args", "scratch_env", "synthetic_plans"]
