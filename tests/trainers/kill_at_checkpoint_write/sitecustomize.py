"""Test-only fault injection for tests/trainers/test_reliability.py: a power cut during a checkpoint write.

Python's `site` imports `sitecustomize` from sys.path at start-up; the test puts this folder on the PYTHONPATH of
the `nnUNetv2_train` subprocess it kills, and of nothing else. With KILL_AT_CHECKPOINT_WRITE=N, `torch.save` is
wrapped: every write to a path containing ".pth" is appended to CHECKPOINT_WRITE_LOG, and the N-th one of the
process is cut to half its size right after it was written, then the process is SIGKILLed. The cut hits whatever
file that write went to, so a non-atomic writer leaves a half checkpoint under the final name; an atomic one
(torch.save to a temporary file, then os.replace) leaves only its temporary file cut.
"""
import os
import signal

KILL_AT = os.environ.get("KILL_AT_CHECKPOINT_WRITE")
WRITE_LOG = os.environ.get("CHECKPOINT_WRITE_LOG")

if KILL_AT:
    import torch

    _torch_save = torch.save
    _writes = 0

    def _save_or_die(obj, f, *args, **kwargs):
        global _writes
        result = _torch_save(obj, f, *args, **kwargs)
        if isinstance(f, (str, os.PathLike)) and ".pth" in os.fspath(f):
            _writes += 1
            if WRITE_LOG:
                with open(WRITE_LOG, "a") as log:
                    log.write(f"{os.getpid()} {_writes} {os.fspath(f)}\n")
            if _writes == int(KILL_AT):
                with open(f, "r+b") as written:
                    written.truncate(os.path.getsize(f) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        return result

    torch.save = _save_or_die
