"""How well do SelfMedHPM's loss predictions rank the actual per-cell reconstruction losses of a finished stage 1?
(The actual losses in the scheme's difficulty space, raw since docs/selfmedhpm.md's ranking target became raw.)

    python scripts/selfmedhpm_ranking_check.py DATASET CONFIGURATION FOLD [--batches 10] [-p nnUNetPlans]

Reads `<nnUNet_results>/.../nnUNetTrainerSelfMedHPM__<plans>__<configuration>/fold_<FOLD>/pretraining/
checkpoint_final.pth`, draws batches from the real stage-1 loader (fixed seeds), masks them at random (ratio 0.75)
and prints, over the masked cells (rank accuracy and Spearman's rho, as logged during training):
- the reconstruction's own amplitude mean(f^2) as a predictor, with freshly initialised and with trained weights;
- the trained student's predictor run on the un-masked patch (what a teacher that tracks the student would give);
- the EMA teacher's predictor on the un-masked patch (what chose the masks).
Set nnUNet_preprocessed, nnUNet_results and nnUNet_n_proc_DA=0 as for training (docs/selfmedhpm.md).
"""
import argparse
import os
import random

import numpy as np
import torch
from nnunetv2.run.run_training import get_trainer_from_args

from nnunet_anatomask.pretraining.schemes.selfmed_hpm import ranked_cells, ranking_accuracy, spearman
from nnunet_anatomask.trainers.stage1 import prepare_trainer
from nnunet_anatomask.trainers.stage1_data import shutdown, stage1_batches


def seeded_batches(trainer, count: int) -> list[torch.Tensor]:
    for seed in (random.seed, np.random.seed, torch.manual_seed):
        seed(0)
    batches = stage1_batches(trainer, 1.0, torch.device("cpu"))
    try:
        return [next(batches)["data"] for _ in range(count)]
    finally:
        shutdown(batches)


@torch.no_grad()
def check(runner, batches: list[torch.Tensor], predict) -> str:
    """Rank accuracy and Spearman of predict(images, mask, reconstruction) against the masked cells' losses."""
    scheme, accuracy, rho = runner.scheme, [], []
    torch.manual_seed(1)  # the same random masks for every check
    for images in batches:
        mask = scheme.select_mask(images, 0).cells  # epoch 0 of a long run: n_hard = 0, a random mask
        reconstruction = runner.model(images, scheme.grid_mask(mask))
        errors = scheme.cell_difficulty(reconstruction, images)  # the scheme's ranking target (its space)
        cells = ranked_cells(mask, scheme.n_masked(0), scheme.config.max_ranked_cells)
        predicted = predict(images, reconstruction).gather(1, cells)
        accuracy.append(ranking_accuracy(predicted, errors.gather(1, cells)))
        rho.append(spearman(predicted, errors.gather(1, cells)))
    return f"rank accuracy {torch.stack(accuracy).mean():.3f}, Spearman {torch.stack(rho).mean():.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("configuration")
    parser.add_argument("fold")
    parser.add_argument("-p", default="nnUNetPlans")
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("nnUNet_anatomask_pretrain_epochs", "1000")  # epoch 0 of a long run: random masks
    fold = args.fold if args.fold == "all" else int(args.fold)
    trainer = get_trainer_from_args(args.dataset, args.configuration, fold, "nnUNetTrainerSelfMedHPM", args.p,
                                    device=torch.device("cpu"))
    prepare_trainer(trainer)  # batch size and dataset class, as stage 1 needs them
    runner = trainer.stage1
    runner.build()
    batches = seeded_batches(trainer, args.batches)
    grid, scheme = runner.grid, runner.scheme

    def amplitude(images, reconstruction):
        return grid.patchify(reconstruction).square().mean(dim=(-1, -2))

    def unmasked(model, predictor):
        def predict(images, _):
            nothing = torch.zeros(images.shape[0], *grid.cells_per_axis, dtype=torch.bool)
            return predictor(model(images, nothing, features=True).decoder_features)
        return predict

    print("initial weights, amplitude mean(f^2):", check(runner, batches, amplitude))
    ckpt = torch.load(runner.final_checkpoint, map_location="cpu", weights_only=True)
    runner.model.network.load_state_dict(ckpt["network_weights"])
    runner.model.load_extra_state_dict(ckpt["scheme_state"]["model_extra"])
    scheme.load_state_dict(ckpt["scheme_state"]["scheme"])
    print("trained weights, amplitude mean(f^2):", check(runner, batches, amplitude))
    student, teacher = unmasked(runner.model, scheme.predictor), unmasked(scheme.ema.model, scheme.teacher_predictor)
    print("trained student predictor, un-masked patch:", check(runner, batches, student))
    print("EMA teacher predictor, un-masked patch:", check(runner, batches, teacher))


if __name__ == "__main__":
    main()
