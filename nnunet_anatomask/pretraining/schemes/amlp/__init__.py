"""AMLP (arXiv 2309.04312): the scheme, its cell categories (MPS) and its loss terms (ARL, CCL); docs/amlp.md."""
from nnunet_anatomask.pretraining.schemes.amlp.categories import INTENSITY_STATISTICS, Categories
from nnunet_anatomask.pretraining.schemes.amlp.scheme import AMLPConfig, AMLPScheme
from nnunet_anatomask.pretraining.schemes.amlp.terms import arl_weights, consistency_loss, hard_cells, weight_entropy

__all__ = ["AMLPConfig", "AMLPScheme", "Categories", "INTENSITY_STATISTICS", "arl_weights", "consistency_loss",
           "hard_cells", "weight_entropy"]
