"""Evaluation harness: every registered masking scheme against Scratch through the real nnU-Net pipeline.

Entry point ``python -m nnunet_anatomask.evaluate`` (``cli.py``). One idea per module: ``protocol`` (the sizes),
``trainer_names`` (which trainers), ``anatomy_dataset`` (the real-anatomy data), ``plans`` (capped plans),
``splits`` (label fractions as folds), ``layout`` (where things live), ``commands`` (nnU-Net's console scripts),
``pipeline`` (the resumable steps), ``prediction`` and ``metrics`` (test Dice by nnU-Net's code), ``statistics``
(intervals), ``record`` (the rerun guard), ``report`` and ``plots``.
"""
