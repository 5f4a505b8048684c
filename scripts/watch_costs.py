"""What each addition that makes stage 1 watchable costs, as a share of the training steps' time, in one real run.

Runs what ``nnUNetv2_pretrain DATASET CONFIG FOLD -tr TRAINER ...`` runs (``cli.pretrain``, in-process), with
nnUNetv2_pretrain's thread settings or, from the run's start, ``--threads`` torch threads (a runner callback). At
the end it prints, per callback and method, the seconds the runner measured (summary.json's ``callback_time_s``,
docs/watching.md) and their share of the summed epoch times (the training steps, as the log's "Epoch time"). The progress bar only draws where stdout is a terminal: run it under one
(e.g. ``script -qc``) to time it. Switch on what you want measured as a user would (docs/watching.md):

    nnUNet_anatomask_probe_every=2 nnUNet_wandb_enabled=1 nnUNet_wandb_mode=offline \\
        script -qc "python scripts/watch_costs.py 981 2d 0 -tr nnUNetTrainerAnatoMask -p nnUNetPlansCappedF32B16 \\
        -device cpu --threads 1" /dev/null
"""
import argparse
import json
import os
import sys

import torch

from nnunet_anatomask import cli
from nnunet_anatomask.trainers.stage1_callbacks import Stage1Callback


class TorchThreads(Stage1Callback):
    """Sets torch's CPU threads when the run starts (after nnUNetv2_pretrain's own thread settings), so that the
    training steps run with ``threads`` of them."""

    def __init__(self, threads: int):
        self.threads = threads

    def on_run_start(self, runner) -> None:
        torch.set_num_threads(self.threads)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="torch CPU threads (nnUNetv2_pretrain -device cpu: every core)")
    own, argv = parser.parse_known_args(argv)
    path = cli.pretrain(cli.parse_args(argv), [TorchThreads(own.threads)] if own.threads else [])
    log = torch.load(path, map_location="cpu", weights_only=True)["logging"]
    with open(os.path.join(os.path.dirname(path), "summary.json")) as f:
        seconds = {k: v for k, v in json.load(f)["callback_time_s"].items() if not k.startswith("TorchThreads.")}
    steps = sum(log["epoch_time"])
    print(f"\n{os.path.dirname(path)}: {len(log['epoch_time'])} epochs, training steps {steps:.1f} s "
          f"(stdout a terminal: {sys.stdout.isatty()}, torch threads: {torch.get_num_threads()})")
    print("| callback | method | seconds | % of the training steps |\n|---|---|---|---|")
    for key, value in seconds.items():
        name, event = key.split(".")
        print(f"| {name} | {event} | {value:.2f} | {100 * value / steps:.2f} |")
    print(f"| all | | {sum(seconds.values()):.2f} | {100 * sum(seconds.values()) / steps:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
