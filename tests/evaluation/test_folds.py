"""Stage-2 runs as folds: every (fraction, seed, lr) one fold, numbering kept across reruns."""
from nnunet_anatomask.evaluation.folds import Stage2Run, assign_folds, load_folds, save_folds, wanted_runs


def test_wanted_runs_seed_major_with_the_lr_comparison_last():
    assert wanted_runs([0.05, 1.0], [0, 1], None) == [(0.05, 0, None), (1.0, 0, None), (0.05, 1, None),
                                                      (1.0, 1, None)]
    assert wanted_runs([1.0, 0.05], [3], 1e-3)[-1] == (0.05, 3, 1e-3)
    assert wanted_runs([1.0, 0.05], [3], 1e-3, scratch_lrs=[1e-3, 3e-3])[-2:] == [(0.05, 3, 1e-3), (0.05, 3, 3e-3)]


def test_scratch_lrs_and_recipes_keep_existing_folds(tmp_path):
    """Folds written before Scratch's other start lrs existed keep their numbers and meaning (recipes add trainer
    names, no folds)."""
    table, _ = assign_folds([], wanted_runs([0.1, 1.0], [0, 1], None))
    table2, wanted2 = assign_folds(table, wanted_runs([0.1, 1.0], [0, 1], None, scratch_lrs=[1e-3]))
    assert table2[:4] == table and table2[4:] == [Stage2Run(4, 0.1, 0, 1e-3), Stage2Run(5, 0.1, 1, 1e-3)]


def test_existing_folds_keep_their_numbers(tmp_path):
    table, wanted = assign_folds([], wanted_runs([0.1, 1.0], [0, 1], None))
    assert [r.fold for r in table] == [0, 1, 2, 3] and wanted == table
    path = str(tmp_path / "folds.json")
    save_folds(path, table)
    assert load_folds(path) == table
    # later: a third seed and the lr comparison; the first four folds keep their meaning
    table2, wanted2 = assign_folds(load_folds(path), wanted_runs([0.1, 1.0], [0, 1, 2], 1e-3))
    assert table2[:4] == table and len(table2) == 4 + 2 + 3
    assert {r.fold for r in wanted2} == set(range(9))
    assert Stage2Run(6, 0.1, 0, 1e-3) in table2
    # asking for fewer runs renumbers nothing
    table3, wanted3 = assign_folds(table2, wanted_runs([1.0], [1], None))
    assert table3 == table2 and wanted3 == [Stage2Run(3, 1.0, 1, None)]


def test_more_seeds_at_one_fraction_keep_the_existing_folds(tmp_path):
    """--fraction-seeds 0.1=0,1,2,3,4 after a run with seeds 0 1: the four folds keep their numbers, the new seeds
    run at 0.1 only."""
    table, _ = assign_folds([], wanted_runs([0.1, 1.0], [0, 1], None))
    more = wanted_runs([0.1, 1.0], [0, 1], None, {0.1: [0, 1, 2, 3, 4]})
    assert more == [(0.1, 0, None), (1.0, 0, None), (0.1, 1, None), (1.0, 1, None), (0.1, 2, None), (0.1, 3, None),
                    (0.1, 4, None)]
    table2, wanted2 = assign_folds(table, more)
    assert table2[:4] == table and [r.fold for r in wanted2] == list(range(7))
    assert wanted_runs([0.1, 1.0], [0], 1e-3, {0.1: [5, 6]})[-2:] == [(0.1, 5, 1e-3), (0.1, 6, 1e-3)]
