"""The harness's log lines stay whole when its steps run side by side in threads (``jobs`` > 1) and stdout is a
pipe: CI once saw "[run ]" lines of two threads share one line (``print`` writes the text and the newline apart),
and a test that counts them failed."""
import subprocess
import sys

PROGRAM = """
import threading
from nnunet_anatomask.evaluation.pipeline import print_line
threads = [threading.Thread(target=lambda k=k: [print_line(f"[run ] thread {k} line {i} " + "x" * 40)
                                                for i in range(5000)]) for k in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
"""


def test_lines_from_threads_stay_whole_on_a_pipe():
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    lines = out.splitlines()
    assert len(lines) == 3 * 5000
    broken = [line for line in lines if not line.startswith("[run ] thread ") or line.count("[run ]") != 1]
    assert not broken, broken[:3]
