"""Which trainers the harness compares: every registered scheme, by registration alone."""
import pytest

from nnunet_anatomask.evaluation.errors import EvaluationError
from nnunet_anatomask.evaluation.trainer_names import SCRATCH, scheme_trainers, short_name, stage1_trainer, \
    with_recipes
from nnunet_anatomask.pretraining.schemes import SCHEMES


def test_every_registered_scheme_is_compared():
    assert scheme_trainers() == ["nnUNetTrainer" + s for s in SCHEMES]
    assert scheme_trainers(["RandomMask"]) == ["nnUNetTrainerRandomMask"]
    assert short_name(SCRATCH) == "Scratch"


def test_a_newly_registered_scheme_joins(monkeypatch):
    """Catches a scheme list kept in the harness instead of read from the registry."""
    monkeypatch.setitem(SCHEMES, "ToyScheme", object)
    assert scheme_trainers()[-1] == "nnUNetTrainerToyScheme"


def test_unknown_scheme_names_the_known_ones():
    with pytest.raises(EvaluationError, match="unknown scheme.*RandomMask"):
        scheme_trainers(["NoSuchScheme"])


def test_recipes_are_trainer_suffixes_sharing_the_schemes_stage1():
    assert with_recipes(["nnUNetTrainerA", "nnUNetTrainerB"], ["full", "frozenEnc"]) == [
        "nnUNetTrainerA", "nnUNetTrainerA_frozenEnc", "nnUNetTrainerB", "nnUNetTrainerB_frozenEnc"]
    assert stage1_trainer("nnUNetTrainerA_frozenEnc") == stage1_trainer("nnUNetTrainerA") == "nnUNetTrainerA"
    with pytest.raises(EvaluationError, match="layerDecay.*from full, nnssl, sawtooth, frozenEnc, linearProbe"):
        with_recipes(["nnUNetTrainerA"], ["layerDecay"])  # a Primus recipe: the harness trains the plans' CNN
