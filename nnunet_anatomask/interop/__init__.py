"""The field's checkpoint standard: nnssl's adaptation plan (MIC-DKFZ/nnssl, ``adaptation_planning/
adaptation_plan.py``), which nnU-Net's main branch reads to fine-tune self-supervised checkpoints (docs/interop.md).

- ``architectures``: our networks in the plan's vocabulary (dynamic PlainConvUNet / ResidualEncoderUNet, Primus
  presets), and a network built from a plan alone.
- ``adaptation_plan``: ours out, the plan every stage-1 checkpoint carries, and its citations.
- ``weights_in``: theirs in, what is nnssl's about loading its checkpoints (the plan's checks, its key names mapped
  to the network's); the loading itself and the report are the transfer library's (``nnunet_anatomask.transfer``).
- ``plan_like_pretrained``: ``nnUNetv2_plan_like_pretrained``, plans whose network is the checkpoint's.
- ``share``, ``model_card``: ``nnUNetv2_share_pretrained``, the folder nnU-Net main downloads, its model card.
"""
