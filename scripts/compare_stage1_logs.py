"""Print a markdown table comparing per-epoch stage-1 figures of two or more runs (from their checkpoints).

    python scripts/compare_stage1_logs.py FIGURE RUN_FOLDER [RUN_FOLDER ...] [--every K]

RUN_FOLDER is a fold's `pretraining/` folder (checkpoint_final.pth, else checkpoint_latest.pth is read);
FIGURE a logged figure such as masked_fg_share, alpha or epoch_time.
"""
import argparse
import math
import os

import torch


def load_log(folder: str) -> tuple[str, dict]:
    for name in ("checkpoint_final.pth", "checkpoint_latest.pth"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            return ckpt["scheme"], ckpt["logging"]
    raise FileNotFoundError(f"no stage-1 checkpoint in {folder}")


def cell(values: list, epoch: int) -> str:
    if epoch >= len(values) or values[epoch] is None or math.isnan(values[epoch]):
        return "–"
    return f"{values[epoch]:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figure")
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--every", type=int, default=1, help="print every K-th epoch (and the last)")
    parser.add_argument("--extra", nargs="*", default=["alpha"], help="figures of the first run to add as columns")
    args = parser.parse_args()
    try:
        runs = [load_log(f) for f in args.folders]
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    first_scheme, first_log = runs[0]
    columns = [f"{scheme} {args.figure}" for scheme, _ in runs] + [f"{first_scheme} {x}" for x in args.extra]
    print("| epoch | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    n_epochs = max(len(log[args.figure]) for _, log in runs)
    for epoch in range(n_epochs):
        if epoch % args.every and epoch != n_epochs - 1:
            continue
        cells = [cell(log[args.figure], epoch) for _, log in runs]
        cells += [cell(first_log.get(x, []), epoch) for x in args.extra]
        print(f"| {epoch} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
