"""What each addition that makes stage 1 watchable costs, as a share of the training steps' time, in one real run.

Runs exactly what ``nnUNetv2_pretrain DATASET CONFIG FOLD -tr TRAINER ...`` runs (``cli.main``,
in-process), with every method of the default callbacks (trainers/stage1_watch.py) timed; at the end it prints,
per callback and method, its seconds and their share of the summed epoch times (the training steps, as the log's
"Epoch time"). The progress bar only draws where stdout is a terminal: run it under one (e.g. ``script -qc``) to
time it. Switch on what you want measured as a user would (docs/watching.md):

    nnUNet_anatomask_probe_every=2 nnUNet_wandb_enabled=1 nnUNet_wandb_mode=offline \\
        script -qc "python scripts/watch_costs.py 981 2d 0 -tr nnUNetTrainerAnatoMask -p nnUNetPlansCappedF32B16 \\
        -device cpu --threads 1" /dev/null
"""
import argparse
import os
import sys
import time
from collections import defaultdict

import torch

from nnunet_anatomask import cli
from nnunet_anatomask.trainers.experiment_log import ExperimentLog
from nnunet_anatomask.trainers.stage1_callbacks import Stage1Callback
from nnunet_anatomask.trainers.stage1_heldout import BestCheckpoint, HeldOutLoss
from nnunet_anatomask.trainers.stage1_probe import LinearProbe
from nnunet_anatomask.trainers.stage1_progress import ProgressBar

TIMED = (ProgressBar, HeldOutLoss, BestCheckpoint, LinearProbe, ExperimentLog)
EVENTS = [name for name in vars(Stage1Callback) if name.startswith("on_")]


def time_methods(seconds: dict) -> None:
    """Wrap every callback method a TIMED class defines so that its wall time adds up in ``seconds``."""
    for cls in TIMED:
        for event in EVENTS:
            if event not in vars(cls):
                continue

            def timed(self, *args, _method=vars(cls)[event], _key=(cls.__name__, event)):
                start = time.perf_counter()
                try:
                    return _method(self, *args)
                finally:
                    seconds[_key] += time.perf_counter() - start
            setattr(cls, event, timed)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="torch CPU threads (nnUNetv2_pretrain -device cpu: every core)")
    own, argv = parser.parse_known_args(argv)
    if own.threads:
        device_from_arg = cli.device_from_arg
        cli.device_from_arg = lambda name: (device_from_arg(name), torch.set_num_threads(own.threads))[0]
    seconds = defaultdict(float)
    time_methods(seconds)
    path = cli.pretrain(cli.parse_args(argv))
    log = torch.load(path, map_location="cpu", weights_only=True)["logging"]
    steps = sum(log["epoch_time"])
    print(f"\n{os.path.dirname(path)}: {len(log['epoch_time'])} epochs, training steps {steps:.1f} s "
          f"(stdout a terminal: {sys.stdout.isatty()}, torch threads: {torch.get_num_threads()})")
    print("| callback | method | seconds | % of the training steps |\n|---|---|---|---|")
    for (name, event), value in sorted(seconds.items()):
        print(f"| {name} | {event} | {value:.2f} | {100 * value / steps:.2f} |")
    print(f"| all | | {sum(seconds.values()):.2f} | {100 * sum(seconds.values()) / steps:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
