"""Pretrained weights into a stage-2 network: which part a tensor belongs to, what goes over, how tensors of
another shape are adapted, and the transfer report (docs/recipes.md, Transfer)."""
