"""The command line is the only place that exits: library errors become one clear exit message."""
import os

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


@pytest.mark.parametrize("args, message", [
    (["--fraction-seeds", "0.3=0,1"], "evaluate: --fraction-seeds 0.3=0,1: 0.3 is not one of the fractions"),
    (["--fraction-seeds", "0.5:0,1"], "evaluate: --fraction-seeds 0.5:0,1: write FRACTION=SEED,SEED"),
    (["--fraction-seeds", "0.5=1,1"], "evaluate: --fraction-seeds 0.5=1,1: give each seed once"),
    (["--stage1-factors", "1", "0"], "evaluate: --stage1-factors 1 0: each factor once, positive"),
])
def test_new_axes_refuse_bad_values(tmp_path, args, message):
    with pytest.raises(SystemExit) as e:
        main(["--size", "tiny", "--device", "cpu", "--output", str(tmp_path), "--estimate", *args])
    assert str(e.value).startswith(message)


def test_cpu_pool_estimate_counts_factors_and_fraction_seeds(tmp_path, capsys):
    """Stage 1 per scheme and factor (x10 ten times as long), 5 seeds x 2 fractions + 2 more seeds at 25 %."""
    main(["--size", "cpu-pool", "--device", "cpu", "--output", str(tmp_path), "--estimate", "--schemes",
          "RandomMask", "AnatoMask", "--stage1-factors", "1", "10", "--fraction-seeds", "0.25=0,1,2,3,4,5,6"])
    text = capsys.readouterr().out
    assert "estimated wall time" in text and "12 stage-2 runs per trainer" in text
    minutes = dict(part.rsplit(" ", 2)[:2] for part in text.split("stage 1 ")[1].split(";")[0].split(", "))
    assert float(minutes["RandomMask_x10"]) > 9 * float(minutes["RandomMask"])
    assert not os.listdir(tmp_path)  # an estimate writes nothing
