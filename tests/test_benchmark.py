"""Smoke tests of the benchmark command (docs/performance.md): it runs and reports sane numbers.

Nothing here is timed: the figures depend on the machine and its load. A table row per step with finite,
positive numbers, and the torch.compile check of the masked forward (no graph break, no recompilation).
"""
import math

import pytest
import torch

from nnunet_anatomask import benchmark
from nnunet_anatomask.pretraining.schemes import SCHEMES

SUPERVISED = "supervised (nnUNetTrainer.train_step)"


def table(text: str, first_header_cell: str) -> dict[str, list[str]]:
    """The markdown table whose header starts with `first_header_cell`: {row name: cells}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header_cell} |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def number(cell: str) -> float:
    return float(cell.split()[0])


def check_main_table(text: str, end_to_end: bool, schemes=tuple(SCHEMES)) -> None:
    rows = table(text, "step")
    assert list(rows) == [SUPERVISED, *schemes], text
    for name, cells in rows.items():
        step_ms, step_ratio, peak, peak_ratio, step_its, e2e_its, e2e_ratio = cells
        for cell in (step_ms, step_ratio, peak, peak_ratio, step_its) + ((e2e_its, e2e_ratio) if end_to_end else ()):
            value = number(cell)
            assert math.isfinite(value) and value > 0, f"{name}: {cells}\n{text}"
        if not end_to_end:
            assert e2e_its == e2e_ratio == "n/a", text
    assert number(rows[SUPERVISED][1]) == 1.0


def check_costs_table(text: str, schemes=tuple(SCHEMES)) -> None:
    rows = table(text, "scheme")
    assert list(rows) == list(schemes), text
    for name, cells in rows.items():
        assert number(cells[0]) > 0
        for cell in cells[1:]:
            if cell != "–":
                assert math.isfinite(number(cell)), f"{name}: {cells}"
    assert rows["AnatoMask"][2] != "–" and number(rows["AnatoMask"][2]) > 0, "the teacher forward was not timed"


def test_synthetic_tiny_runs_and_reports(tmp_path, capsys):
    out, threads = tmp_path / "bench.md", torch.get_num_threads()
    text = benchmark.main(["--synthetic", "tiny", "--device", "cpu", "--steps", "1", "--warmup", "0",
                           "--threads", "1", "--explain", "--output", str(out)])
    assert out.read_text() == text
    assert "## Stage-1 benchmark: tiny" in capsys.readouterr().out
    check_main_table(text, end_to_end=False)
    check_costs_table(text)
    for features in (False, True):  # the reconstruction alone, and with the features a scheme may ask for
        assert f"features={features}): 1 graph(s), 0 graph break(s)" in text, text
    assert "no recompilation" in text, text
    assert "--synthetic tiny" in text and "torch threads 1" in text and "load average" in text
    assert torch.get_num_threads() == threads, "--threads leaked out of the benchmark"


def test_real_dataset_measures_end_to_end(demo3d, monkeypatch):
    monkeypatch.setenv("nnUNet_preprocessed", demo3d.preprocessed)
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    text = benchmark.main(["--dataset", str(demo3d.dataset_id), "--configuration", "3d_fullres", "--device", "cpu",
                           "--steps", "1", "--warmup", "0", "--threads", "1", "--schemes", "AnatoMask"])  # the costlier one
    check_main_table(text, end_to_end=True, schemes=["AnatoMask"])
    check_costs_table(text, schemes=["AnatoMask"])
    assert demo3d.dataset_name in text


def test_help_shows_defaults_and_every_option_has_help(capsys):
    parser = benchmark.build_parser()
    assert all(action.help for action in parser._actions), [a.dest for a in parser._actions if not a.help]
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: 20)" in text and "(default: 3d_fullres)" in text and "registered: " in text


def test_misspelled_scheme_gets_did_you_mean(capsys):
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--synthetic", "tiny", "--schemes", "AnatoMsk"])
    assert "Did you mean AnatoMask?" in capsys.readouterr().err


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--synthetic", "huge"])
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--synthetic", "tiny", "--steps", "0"])
    with pytest.raises(SystemExit):
        benchmark.parse_args([])
