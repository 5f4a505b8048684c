"""Image-only (unlabelled) nnU-Net datasets: planning and preprocessing for stage 1 (docs/pools_and_ddp.md).

nnU-Net 2.8.1 plans a dataset from a fingerprint whose intensity statistics come from the label foreground, and
its preprocessing reads a label per training case; an image-only pool has neither. ``fingerprint`` writes the
fingerprint from the images alone (ours: statistics over nnU-Net's nonzero mask), nnU-Net's own experiment
planner plans from it, and ``preprocessing`` runs nnU-Net's DefaultPreprocessor as it runs for cases without a
segmentation. ``cli`` is ``nnUNetv2_plan_and_preprocess_unlabelled``.
"""
