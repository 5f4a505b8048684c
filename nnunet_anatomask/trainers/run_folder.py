"""The fold folder of one run: locked before any work, and left as found when the run did no work there.

nnU-Net's ``__init__`` creates the fold folder and starts a log file in it. Our trainers create that folder first
and take its lock (run_lock.py; under DDP rank 0 alone, the rank that writes). A refusal raised later, once the
trainer is built (no GPU for a -pretrained_weights check, too few cases, constant images...), would leave a
``fold_X/`` that holds only a training log; so when the process ends, the folders this run created are removed
again if they hold nothing but this run's own log and lock (ours; docs/troubleshooting.md).
"""
from __future__ import annotations

import atexit
import os
from typing import Optional

from nnunet_anatomask.run_lock import RunLock


def outermost_missing(folder: Optional[str]) -> Optional[str]:
    """The outermost folder on the way to ``folder`` that does not exist yet (None when ``folder`` exists)."""
    created, path = None, folder
    while path and not os.path.isdir(path):
        created, path = path, os.path.dirname(path)
    return created


def describe_run(trainer_name: str, plans: dict, configuration: str, fold, continue_training: bool) -> str:
    """What the lock file says the run is (the nnUNetv2_train arguments it was built from)."""
    return (f"{trainer_name} on {plans['dataset_name']} {configuration} fold {fold}, plans {plans['plans_name']}"
            + (", continuing (--c)" if continue_training else ""))


class RunFolder:
    """Creates ``folder``, takes its lock (when ``holds_lock``) and cleans up at exit what an idle run left."""

    def __init__(self, folder: str, run: str, holds_lock: bool):
        self.folder = folder
        self.created = outermost_missing(folder)
        self.own_files: set[str] = set()  # not the lock: once released, a lock file there is another run's
        os.makedirs(folder, exist_ok=True)
        self.lock = None
        if holds_lock:
            atexit.register(self.leave)
            self.lock = RunLock(folder, run)

    def notes(self) -> list[str]:
        """Lines for the training log (a stale lock taken over)."""
        return self.lock.notes if self.lock is not None else []

    def add_own_file(self, path: str) -> None:
        """A file of this run in the fold folder (its training log) that leaves with the folder."""
        self.own_files.add(os.path.basename(path))

    def leave(self) -> None:
        """Release the lock; remove the folders this run created if the fold folder holds only this run's files."""
        if self.lock is not None:
            self.lock.release()
        if self.created is None or not os.path.isdir(self.folder):
            return
        entries = os.listdir(self.folder)
        if not set(entries) <= self.own_files:
            return
        for name in entries:
            os.remove(os.path.join(self.folder, name))
        path = self.folder
        while True:  # bottom-up, and only empty folders: never another run's folder created meanwhile
            try:
                os.rmdir(path)
            except OSError:
                return
            if path == self.created:
                return
            path = os.path.dirname(path)
