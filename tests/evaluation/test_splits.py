"""Label fractions as folds: counts, nested subsets, one validation set, the splits file guard."""
import json

import pytest

from nnunet_anatomask.evaluation.errors import EvaluationError
from nnunet_anatomask.evaluation.splits import fraction_counts, make_splits, write_splits


def test_fraction_counts():
    assert fraction_counts([0.1, 0.25, 1.0], 36) == [4, 9, 36]
    assert fraction_counts([0.1, 0.25, 1.0], 6) == [1, 2, 6]  # at least one case, round half up
    for bad in (0.0, 1.5):
        with pytest.raises(EvaluationError, match="outside"):
            fraction_counts([bad], 10)


def test_splits_nested_disjoint_from_validation():
    cases = [f"c{i:02d}" for i in range(40)]
    splits = make_splits(cases, 4, [4, 9, 36])
    assert [len(s["train"]) for s in splits] == [4, 9, 36]
    val = set(splits[0]["val"])
    assert len(val) == 4 and all(set(s["val"]) == val for s in splits)
    for small, big in zip(splits, splits[1:]):
        assert set(small["train"]) <= set(big["train"])
    assert not val & set(splits[-1]["train"]) and val | set(splits[-1]["train"]) == set(cases)
    assert make_splits(cases, 4, [4, 9, 36]) == splits  # seeded


def test_other_splits_in_place_are_refused(tmp_path):
    path = str(tmp_path / "splits_final.json")
    splits = make_splits([f"c{i}" for i in range(10)], 2, [2, 8])
    write_splits(path, splits)
    write_splits(path, splits)  # the same: fine
    assert json.load(open(path)) == splits
    with pytest.raises(EvaluationError, match="other splits"):
        write_splits(path, splits[:1])
