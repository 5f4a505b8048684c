"""The command line is the only place that exits: library errors become one clear exit message."""
import pytest

from nnunet_anatomask.evaluation.cli import main


@pytest.mark.parametrize("args, message", [
    (["--schemes", "NoSuchScheme"], "evaluate: unknown scheme"),
    (["--budget", "1", "0", "1"], "evaluate: --budget 1 0 1: every value must be >= 1"),
    (["--fractions", "0"], "evaluate: label fraction"),
    (["--recipes", "full", "noSuchRecipe"], "evaluate: --recipes full noSuchRecipe: name each once, from full, nnssl"),
    (["--scratch-lrs", "0"], "evaluate: --scratch-lrs 0.0: every start lr must be > 0"),
])
def test_errors_exit_with_their_message(tmp_path, args, message):
    with pytest.raises(SystemExit) as e:
        main(["--size", "tiny", "--device", "cpu", "--output", str(tmp_path), "--stop-after", "plan", *args])
    assert str(e.value).startswith(message)
