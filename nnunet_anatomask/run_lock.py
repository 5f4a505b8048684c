"""One run per fold folder: a lock file that names its holder (docs/troubleshooting.md, "One run per fold folder").

nnU-Net has no such guard: two runs on one fold folder overwrite each other's checkpoints, and a ``--c`` started
beside a live run takes its mid-flight checkpoint. Our trainers take ``<fold folder>/nnunet_anatomask.lock`` before
any work (ours):

* The file is created with ``O_CREAT | O_EXCL``, which exactly one creator wins, and holds JSON: pid, host, start
  time, the process's start ticks (Linux) and the run it serves.
* A second run is refused with a message that names the holder and the fix. The same process taking it again
  (several trainers built in one process) is not refused.
* A lock of a process on this host that no longer runs (SIGKILL, a crash, a reboot; a reused pid is told apart by
  its start ticks) is stale: one log line, and the new run takes it over. A lock from another host cannot be
  checked from here, so it is never taken over: the message says so and how to remove it.
* The lock is released when the process ends (atexit, also after an error or Ctrl-C); SIGKILL leaves it behind,
  for the next run to take over.
"""
from __future__ import annotations

import atexit
import json
import os
import socket
import time
from datetime import datetime
from typing import Optional

from nnunet_anatomask.errors import PluginError

LOCK_NAME = "nnunet_anatomask.lock"
TAKEOVER_GUARD_STALE_S = 60  # a take-over takes microseconds; a guard this old was left by a killed process
HELD: dict[str, str] = {}  # lock path -> the text this process wrote there; released at exit


class RunLockError(PluginError, RuntimeError):
    """The fold folder is in use by another run (or its lock cannot be read)."""


def lock_path(folder: str) -> str:
    return os.path.join(folder, LOCK_NAME)


def process_start_ticks(pid: int) -> Optional[int]:
    """The start time of process ``pid`` in clock ticks since boot (Linux /proc), None where it cannot be read or
    the process is a zombie (dead, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])  # fields[0] is stat's 3rd field (state), [19] its 22nd


def this_process(run: str) -> dict:
    """What the lock file says about its holder."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": datetime.now().isoformat(timespec="seconds"),
            "process_start_ticks": process_start_ticks(os.getpid()), "run": run}


def is_running(holder: dict) -> bool:
    """Whether the holder's process (on this host) still runs: the pid exists and, where Linux tells, started when
    the holder did (so a pid reused after the holder died, or after a reboot, does not count)."""
    pid = holder["pid"]
    if os.path.isdir("/proc/self"):
        ticks = process_start_ticks(pid)
        return ticks is not None and holder.get("process_start_ticks") in (None, ticks)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def read_holder(path: str) -> Optional[dict]:
    """The lock file's contents, None when it is gone or not (yet) complete."""
    try:
        with open(path) as f:
            holder = json.load(f)
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and {"pid", "host"} <= set(holder) else None


def describe(holder: dict) -> str:
    return f"pid {holder['pid']} on host {holder['host']}, started {holder.get('started', '?')} ({holder.get('run')})"


def is_this_process(holder: dict) -> bool:
    return holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()


def refusal(folder: str, holder: dict) -> Optional[str]:
    """Why a run may not use ``folder`` while ``holder`` holds its lock; None when the holder is stale (this host,
    no longer running)."""
    path, here = lock_path(folder), socket.gethostname()
    if holder["host"] != here:
        return (f"Another run may be using this fold folder: {folder} is locked by {describe(holder)}, and this "
                f"machine ({here}) cannot tell whether a process on another host still runs. Fix: if that run is "
                f"still going, wait for it; if it is gone (a lost node, a killed job), delete {path} and start "
                f"again (with --c to continue).")
    if is_running(holder):
        return (f"Another run is using this fold folder: {folder} is locked by {describe(holder)}, which is still "
                f"running. Two runs in one fold folder overwrite each other's checkpoints. Fix: wait for it to end "
                f"or stop it (then continue with --c), or train another fold, trainer or plans. If you are sure "
                f"that process is not a training run, delete {path}.")
    return None


def check_free(folder: str) -> None:
    """Refuse at once, without taking the lock, when another live run holds ``folder`` (a command line's early
    look, before its slow start-up; the trainer takes the lock itself)."""
    holder = read_holder(lock_path(folder))
    if holder is not None and not is_this_process(holder):
        problem = refusal(folder, holder)
        if problem is not None:
            raise RunLockError(problem)


class RunLock:
    """This process's lock on one fold folder; ``notes`` holds the line to log when a stale lock was taken over."""

    def __init__(self, folder: str, run: str):
        self.folder, self.path = folder, lock_path(folder)
        self.notes: list[str] = []
        self.created = False  # False when this process held it already
        self.acquire(run)

    def acquire(self, run: str) -> None:
        """Create the lock file, or find this process holding it already, or take over a stale one; else refuse."""
        me = this_process(run)
        for _ in range(50):  # a few rounds: another process may be writing, or taking over, the lock right now
            if self.create(json.dumps(me, indent=1)):
                self.created = True
                return
            holder = read_holder(self.path)
            if holder is None:
                time.sleep(0.1)  # being written (the creator fills it right after creating it) or just removed
                continue
            if is_this_process(holder):
                return  # taken already by this process (another trainer of it)
            problem = refusal(self.folder, holder)
            if problem is not None:
                raise RunLockError(problem)
            self.take_over(holder)
        raise RunLockError(f"The lock {self.path} could not be taken or read. Fix: if no run is using "
                           f"{self.folder}, delete {self.path} and start again (with --c to continue).")

    def create(self, text: str) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        HELD[self.path] = text
        return True

    def take_over(self, stale: dict) -> None:
        """Remove a stale lock, under a guard file so that two runs taking over at once cannot both succeed."""
        guard = self.path + ".takeover"
        try:
            fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:  # the other taker may remove its guard at any moment: then there is nothing to clear
                if time.time() - os.path.getmtime(guard) > TAKEOVER_GUARD_STALE_S:
                    os.remove(guard)
            except FileNotFoundError:
                pass
            time.sleep(0.1)
            return
        try:
            if read_holder(self.path) == stale:
                os.remove(self.path)
                self.notes.append(f"Taking over the lock of {self.folder}: its holder, {describe(stale)}, is no longer "
                         f"running (killed or crashed)")
        finally:
            os.close(fd)
            os.remove(guard)

    def release(self) -> None:
        """Remove the lock file if this object created it and it still holds what was written."""
        if self.created:
            release_file(self.path, HELD.pop(self.path, None))


def release_file(path: str, text: Optional[str]) -> None:
    """Remove ``path`` if it holds ``text`` (never a lock another run has taken over since)."""
    if text is None:
        return
    try:
        with open(path) as f:
            if f.read() != text:
                return
        os.remove(path)
    except OSError:
        pass  # already gone (e.g. the folder was removed)


def release_all() -> None:
    """atexit: every lock this process still holds."""
    for path, text in list(HELD.items()):
        release_file(path, text)
    HELD.clear()


atexit.register(release_all)
