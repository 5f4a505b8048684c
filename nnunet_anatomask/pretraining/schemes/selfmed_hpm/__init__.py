"""SelfMedHPM (HPM, Wang et al., CVPR 2023): the scheme, its loss predictor and its ranking loss."""
from nnunet_anatomask.pretraining.schemes.selfmed_hpm.predictor import CellLossPredictor
from nnunet_anatomask.pretraining.schemes.selfmed_hpm.ranking import (pair_signs, ranked_cells, ranking_accuracy,
                                                                      relative_ranking_loss, spearman)
from nnunet_anatomask.pretraining.schemes.selfmed_hpm.scheme import SelfMedHPMConfig, SelfMedHPMScheme

__all__ = ["CellLossPredictor", "SelfMedHPMConfig", "SelfMedHPMScheme", "pair_signs", "ranked_cells",
           "ranking_accuracy", "relative_ranking_loss", "spearman"]
