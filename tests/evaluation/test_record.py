"""A rerun in the same folder must ask for the same settings."""
import pytest

from nnunet_anatomask.evaluation.errors import EvaluationError
from nnunet_anatomask.evaluation.record import check_same_run


def test_rerun_with_other_settings_is_refused(tmp_path):
    settings = {"size": "tiny", "fractions": [0.5, 1.0]}
    check_same_run(str(tmp_path), settings)
    check_same_run(str(tmp_path), dict(settings))  # same settings: fine
    with pytest.raises(EvaluationError, match=r"fractions: \[0.5, 1.0\] -> \[0.1, 1.0\].*another --output"):
        check_same_run(str(tmp_path), {**settings, "fractions": [0.1, 1.0]})
