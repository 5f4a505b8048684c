"""`bash scripts/gpu_check.sh` on its CPU path with the tiny size: every section runs (generated data planned by
nnU-Net twice, the benchmark on PlainConvUNet, ResEnc-L and Primus-S, end-to-end against step-only, a tiny
nnUNetv2_train of a scheme) and lands in one results file. The GPU path differs only in sizes and dtypes."""
import os
import shutil
import subprocess

import pytest

from tests.conftest import clean_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "results.md"
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_check.sh"), "--size", "tiny", "--device", "cpu",
                           "--schemes", "RandomMask", "--limit-s", "3000", "--output", str(out)],
                          env=clean_env(), capture_output=True, text=True, timeout=3300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out.read_text()


@pytest.mark.slow  # ~3.5 min of the default suite's 10-minute budget on a 2-core CPU; bash scripts/test.sh -m slow
def test_every_section_ran_into_one_file(check):
    block = check.split("## Sections", 1)[1].split("\n### ", 1)[0]
    sections = [line for line in block.splitlines() if line.startswith("- ")]
    assert len(sections) == 6, sections  # data, 3 networks (autocast off on a CPU), end-to-end, tiny runs
    assert all(line.endswith(" s") and ": done in " in line for line in sections), sections
    for network in ("PlainConvUNet", "ResEnc-L", "Primus-S"):
        assert f"autocast off: {network}" in check
    assert "| supervised (nnUNetTrainer.train_step) |" in check and "| RandomMask |" in check
    assert "ResidualEncoderUNet" in check and "Primus S" in check
    assert "- RandomMask: exit 0 after" in check and "validation Dice" in check


def test_a_section_past_the_deadline_is_skipped_not_half_written(tmp_path):
    out = tmp_path / "results.md"
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_check.sh"), "--size", "tiny", "--device", "cpu",
                    "--schemes", "RandomMask", "--limit-s", "5", "--output", str(out)], env=clean_env(),
                   check=True, capture_output=True, timeout=300, cwd=ROOT)
    text = out.read_text()
    assert "- data: generated volumes, nnU-Net's plans: skipped: " in text and "it needs at least 20 s" in text
    assert text.count("skipped (no data)") == 5


@pytest.mark.parametrize("dtypes, expected", [(["bf16"], ["bf16"]), (None, ["bf16", "fp16"])])
def test_dtypes_pick_the_benchmark_sections_of_a_gpu_run(dtypes, expected):
    """On a GPU each dtype gets one benchmark section per network (built, not run: no GPU needed)."""
    from nnunet_anatomask.gpu_report import Check, parse_args
    args = parse_args(["--device", "cuda", "--output", os.devnull] + (["--dtypes", *dtypes] if dtypes else []))
    check = Check(args)
    shutil.rmtree(check.work)  # made by Check, used only by a run
    sections = check.benchmark_sections()
    assert [s.title.split(":")[0] for s in sections] == [f"benchmark, autocast {d}" for d in expected for _ in range(3)]
    assert [s.args[s.args.index("--autocast") + 1] for s in sections] == [d for d in expected for _ in range(3)]
