"""The lock file of a fold folder (nnunet_anatomask/run_lock.py) against real processes: a live holder refuses, a
dead one (or a reused pid) is taken over once, another host's lock is never taken over. The two real training
runs on one fold folder are in tests/trainers/test_run_folder.py."""
import json
import multiprocessing
import os
import socket
import subprocess
import sys

import pytest

from nnunet_anatomask import run_lock
from nnunet_anatomask.run_lock import RunLock, RunLockError

LINUX_PROC = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="process start ticks need Linux /proc")


def write_lock(folder, holder: dict) -> str:
    path = run_lock.lock_path(str(folder))
    with open(path, "w") as f:
        json.dump(holder, f)
    return path


def holder_of(process: subprocess.Popen, **changes) -> dict:
    holder = {"pid": process.pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00",
              "process_start_ticks": run_lock.process_start_ticks(process.pid), "run": "the other run"}
    return {**holder, **changes}


@pytest.fixture
def sleeper():
    """A live process that is not this one."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process
    process.kill()
    process.wait()


def test_lock_names_this_process_is_reentrant_and_released(tmp_path):
    lock = RunLock(str(tmp_path), "run A")
    holder = run_lock.read_holder(lock.path)
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname() and holder["run"] == "run A"
    assert holder["started"] and lock.created
    again = RunLock(str(tmp_path), "run A, a second trainer of the same process")
    assert not again.created
    again.release()  # only the creator releases
    assert os.path.isfile(lock.path)
    lock.release()
    assert not os.path.exists(lock.path)


def test_a_live_holder_refuses_with_pid_host_start_and_fix(tmp_path, sleeper):
    path = write_lock(tmp_path, holder_of(sleeper))
    expected = (rf"locked by pid {sleeper.pid} on host {socket.gethostname()}, started 2026-01-01T00:00:00 \(the "
                rf"other run\), which is still running\..*Fix: wait for it to end")
    with pytest.raises(RunLockError, match=expected):
        RunLock(str(tmp_path), "run B")
    with pytest.raises(RunLockError, match=expected):
        run_lock.check_free(str(tmp_path))
    assert run_lock.read_holder(path)["pid"] == sleeper.pid  # untouched


def test_a_dead_holders_lock_is_taken_over_with_one_note(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    stale = holder_of(dead)
    dead.wait()
    write_lock(tmp_path, stale)
    run_lock.check_free(str(tmp_path))  # the early look does not refuse a stale lock
    lock = RunLock(str(tmp_path), "run C (--c)")
    assert lock.created and run_lock.read_holder(lock.path)["pid"] == os.getpid()
    assert len(lock.notes) == 1 and f"its holder, pid {dead.pid} on host" in lock.notes[0]
    assert "is no longer running" in lock.notes[0]
    lock.release()


@LINUX_PROC
def test_a_reused_pid_is_not_taken_for_the_holder(tmp_path, sleeper):
    """The pid runs, but it started at another time than the holder (the holder died, the pid was reused)."""
    write_lock(tmp_path, holder_of(sleeper, process_start_ticks=run_lock.process_start_ticks(sleeper.pid) - 1))
    lock = RunLock(str(tmp_path), "run D")
    assert lock.created and len(lock.notes) == 1
    lock.release()


def test_another_hosts_lock_is_never_taken_over(tmp_path):
    path = write_lock(tmp_path, {"pid": 1, "host": "node-17", "started": "2026-01-01T00:00:00", "run": "x"})
    with pytest.raises(RunLockError, match=r"pid 1 on host node-17.*cannot tell whether a process on another host "
                                           r"still runs\. Fix: .*delete .*nnunet_anatomask\.lock"):
        RunLock(str(tmp_path), "run E")
    assert run_lock.read_holder(path)["host"] == "node-17"


def test_release_keeps_a_lock_another_run_has_taken_since(tmp_path):
    lock = RunLock(str(tmp_path), "run F")
    write_lock(tmp_path, {"pid": 1, "host": "node-17", "run": "took it over"})
    lock.release()
    assert run_lock.read_holder(lock.path)["host"] == "node-17"


def test_a_take_over_removes_only_the_stale_lock_it_judged(tmp_path, sleeper):
    """Between judging a lock stale and removing it, another run may have taken it over: then it stays."""
    lock = RunLock(str(tmp_path), "run G")
    stale = run_lock.read_holder(lock.path)
    write_lock(tmp_path, holder_of(sleeper))  # the lock changed hands meanwhile
    lock.take_over(stale)
    assert run_lock.read_holder(lock.path)["pid"] == sleeper.pid and lock.notes == []


def _try_lock(folder: str, results, go, done) -> None:
    go.wait()
    try:
        RunLock(folder, f"racer {os.getpid()}")
        results.put("holder")
    except RunLockError:
        results.put("refused")
    done.wait()  # stay alive: the holder must be running while the others look


def test_racing_take_overs_of_a_stale_lock_leave_one_holder(tmp_path):
    """Six processes find one stale lock at the same moment: exactly one ends up holding it."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    stale = holder_of(dead)
    dead.wait()
    write_lock(tmp_path, stale)
    context = multiprocessing.get_context("fork")
    results, go, done = context.Queue(), context.Event(), context.Event()
    racers = [context.Process(target=_try_lock, args=(str(tmp_path), results, go, done)) for _ in range(6)]
    for racer in racers:
        racer.start()
    go.set()
    outcomes = sorted(results.get(timeout=60) for _ in racers)
    done.set()
    for racer in racers:
        racer.join()
    assert outcomes == ["holder"] + ["refused"] * 5
