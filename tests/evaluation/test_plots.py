"""The report's figures name what they show."""
import matplotlib.image

from nnunet_anatomask.evaluation import plots
from nnunet_anatomask.evaluation.trainer_names import SCRATCH


def curve(level: float) -> dict:
    return {"mean_fg_dice": [level / 2, level, level], "iterations_per_epoch": 50}


def test_learning_curves_legend_names_every_trainer_of_every_panel(tmp_path):
    """A recipe run has trainers in the default-lr panel only and Scratch in both: the legend must name all of them
    once (it used to show only the last panel's, so a reader could not tell the recipes apart)."""
    panels = {"5 %": {SCRATCH: [curve(0.7)], "nnUNetTrainerRandomMask": [curve(0.6)],
                      "nnUNetTrainerRandomMask_nnssl": [curve(0.5)]},
              "5 %, start lr 0.001": {SCRATCH: [curve(0.4)]}}
    path = tmp_path / "curves.png"
    labels = plots.learning_curves(str(path), panels, "t")
    assert labels == ["Scratch", "RandomMask", "RandomMask_nnssl"]
    assert matplotlib.image.imread(path).shape[0] > 100
