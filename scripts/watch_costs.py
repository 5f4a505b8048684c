"""What each addition that makes stage 1 watchable costs, as a share of the training steps' time, in one real run.

Runs what ``nnUNetv2_pretrain DATASET CONFIG FOLD -tr TRAINER ...`` runs, in-process: the trainer built by nnU-Net's
``get_trainer_from_args`` on the device with nnUNetv2_pretrain's thread settings, or with ``--threads`` torch
threads, then stage 1. At the end it prints, per callback and method, the seconds the runner measured
(summary.json's ``callback_time_s``, docs/watching.md) and their share of the summed epoch times (the training
steps, as the log's "Epoch time"). The progress bar only draws where stdout is a terminal: run it under one
(e.g. ``script -qc``) to time it. Switch on what you want measured as a user would (docs/watching.md):

    nnUNet_anatomask_probe_every=2 nnUNet_wandb_enabled=1 nnUNet_wandb_mode=offline \\
        script -qc "python scripts/watch_costs.py 981 2d 0 -tr nnUNetTrainerAnatoMask -p nnUNetPlansCappedF32B16 \\
        -device cpu --threads 1" /dev/null
"""
import argparse
import json
import os
import sys
from typing import Optional

import torch

from nnunet_anatomask import cli


def pretrain(args: argparse.Namespace, threads: Optional[int]) -> str:
    """Stage 1 as ``cli.pretrain`` runs it, with ``threads`` torch threads if given (set before the trainer is
    built, as callers of nnU-Net's run_training set them); returns the final checkpoint's path."""
    from nnunetv2.run.run_training import get_trainer_from_args

    cli.scheme_trainer_class(args.tr)
    device = cli.device_from_arg(args.device)
    if threads:
        torch.set_num_threads(threads)
    fold = args.fold if args.fold == "all" else int(args.fold)
    trainer = get_trainer_from_args(args.dataset_name_or_id, args.configuration, fold, args.tr, args.p, args.c,
                                    device=device)
    return trainer.run_pretraining(args.pretrained_weights)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="torch CPU threads (nnUNetv2_pretrain -device cpu: every core)")
    own, argv = parser.parse_known_args(argv)
    path = pretrain(cli.parse_args(argv), own.threads)
    log = torch.load(path, map_location="cpu", weights_only=True)["logging"]
    with open(os.path.join(os.path.dirname(path), "summary.json")) as f:
        seconds = json.load(f)["callback_time_s"]
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
