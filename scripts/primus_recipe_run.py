"""Stage 1 of a Primus trainer under nnssl's recipe (the default) or under the scheme's CNN recipe, from one seed, to
compare the two (docs/backbones.md, "Why nnssl's recipe").

Runs exactly what ``nnUNetv2_pretrain DATASET CONFIG FOLD -tr TRAINER -device D`` runs (``cli.pretrain_entry``,
in-process), after seeding torch, numpy and random with ``--seed``. ``--recipe scheme`` replaces, for this run
only, the Primus backbone's recipe by the scheme's own (``MaskingScheme.recipe()``: AdamW 1e-4, wd 1e-5, betas
(0.9, 0.999), clip 12, cosine, no drop-path, the scheme's ratio), i.e. what Primus pretrained with before nnssl's
recipe became its default. Usage:

    python scripts/primus_recipe_run.py 990 3d_fullres all -tr nnUNetTrainerRandomMask_PrimusS -device cpu \
        --recipe scheme --seed 0
"""
import argparse
import random
import sys

import numpy as np
import torch

from nnunet_anatomask import cli
from nnunet_anatomask.pretraining.backbones import primus


def use_scheme_recipe() -> None:
    """This tool's comparison run only: the Primus backbone returns the scheme's own recipe, stage 1 without
    stochastic depth."""
    primus.PrimusBackbone.recipe = lambda self, scheme_class: scheme_class.recipe()
    primus.PrimusBackbone.masked_model = lambda self, network: primus.TokenDroppingModel(network, self.grid)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=("nnssl", "scheme"), default="nnssl")
    parser.add_argument("--seed", type=int, default=0)
    args, pretrain_args = parser.parse_known_args(argv)
    if args.recipe == "scheme":
        use_scheme_recipe()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    cli.pretrain_entry(pretrain_args)


if __name__ == "__main__":
    main(sys.argv[1:])
