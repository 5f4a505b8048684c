"""Stage 1 of a Primus trainer under nnssl's recipe (the default) or under the scheme's CNN recipe, from one seed, to
compare the two (docs/backbones.md, "Why nnssl's recipe").

Runs exactly what ``nnUNetv2_pretrain DATASET CONFIG FOLD -tr TRAINER -device D`` runs (``cli.main``,
in-process), after seeding torch, numpy and random with ``--seed``, with the scheme setting ``primus_recipe`` set
to ``--recipe`` (added to any ``nnUNet_anatomask_scheme_config`` of the caller; docs/backbones.md): ``scheme`` is
the scheme's own recipe (``SchemeConfig.recipe``: AdamW 1e-4, wd 1e-5, betas (0.9, 0.999), clip 12, cosine, no
drop-path, the scheme's ratio), i.e. what Primus pretrained with before nnssl's recipe became its default. After
stage 1 the final checkpoint's reconstruction loss (masked, per-cell normalised
MSE, eval mode) is measured on ``--eval-batches`` stage-1 loader batches (training cases) drawn from ``--seed``,
at mask ratios 0.6 and 0.75 with the same masks for every run of the same seed, so runs of the two recipes
(trained at different ratios) are compared on equal terms. Usage:

    python scripts/primus_recipe_run.py 990 3d_fullres all -tr nnUNetTrainerRandomMask_PrimusS -device cpu \
        --recipe scheme --seed 0
"""
import argparse
import json
import os
import random
import sys

import numpy as np
import torch

from nnunet_anatomask import cli, knobs
from nnunet_anatomask.pretraining import losses, masking
from nnunet_anatomask.trainers.stage1 import prepare_trainer
from nnunet_anatomask.trainers.stage1_data import shutdown, stage1_batches


def choose_recipe(recipe: str) -> None:
    """The scheme setting ``primus_recipe`` for this process (the run and the evaluation), beside the caller's."""
    os.environ[knobs.SCHEME_CONFIG] = json.dumps({**knobs.scheme_config(), "primus_recipe": recipe})


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


@torch.no_grad()
def fixed_batch_losses(pretrain_args: list[str], seed: int, n_batches: int) -> dict[float, float]:
    """The final checkpoint's masked reconstruction loss at ratios 0.6 and 0.75 on ``n_batches`` batches drawn
    from ``seed`` (the same batches and masks for every run with that seed)."""
    from nnunetv2.run.run_training import get_trainer_from_args

    args = cli.parse_args(pretrain_args)
    fold = args.fold if args.fold == "all" else int(args.fold)
    trainer = get_trainer_from_args(args.dataset_name_or_id, args.configuration, fold, args.tr, args.p,
                                    False, device=torch.device(args.device))
    runner = trainer.stage1
    prepare_trainer(trainer)
    runner.build()
    runner.load(runner.final_checkpoint)
    runner.model.eval()
    seed_everything(seed + 1000)
    batches = stage1_batches(trainer)
    results = {}
    try:
        images = [next(batches)["data"] for _ in range(n_batches)]
    finally:
        shutdown(batches)
    grid = runner.grid
    for ratio in (0.6, 0.75):
        generator = torch.Generator().manual_seed(seed)
        total = 0.0
        for batch in images:
            key = torch.rand(batch.shape[0], grid.num_cells, generator=generator)
            mask = masking.random_mask(key, masking.num_masked(grid.num_cells, ratio))
            prediction = runner.model(batch, mask.view(-1, *grid.cells_per_axis))
            total += losses.reconstruction_loss(prediction, batch, mask, grid)[0].item()
        results[ratio] = total / n_batches
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=("nnssl", "scheme"), default="nnssl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-batches", type=int, default=8)
    args, pretrain_args = parser.parse_known_args(argv)
    choose_recipe(args.recipe)
    seed_everything(args.seed)
    cli.main(pretrain_args)
    fixed = fixed_batch_losses(pretrain_args, args.seed, args.eval_batches)
    print(f"masked reconstruction loss on fixed batches and masks ({args.recipe} recipe, seed {args.seed}, "
          f"{args.eval_batches} batches): " + ", ".join(f"ratio {r}: {v:.4f}" for r, v in fixed.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
