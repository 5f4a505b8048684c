"""The recipe trainers (docs/recipes.md): every scheme trainer, on the CNN and on each Primus size, and
nnUNetTrainerFinetune, with each stage-2 recipe of its backbone, named ``<trainer>_<recipe suffix>``.

Per recipe and backbone there is one stage-2 class, ``(RecipeMixin, nnUNetTrainerStage2Recipe[,
nnUNet_Primus_<size>_Trainer])``; a recipe trainer is the scheme's stage-1 base (or nnUNetTrainerFinetune) in
front of it, so its optimiser is that class's: test_stage2_optimisers.py builds each stage-2 class and checks that
every recipe trainer has exactly these bases. A scheme's recipe trainers keep stage 1 in the folder of the
recipe-less trainer (``stage1_trainer``): stage 1 runs once for all recipes.
"""
from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.primus import primus_trainers

from nnunet_anatomask.trainers.recipe_trainer import RecipeMixin
from nnunet_anatomask.recipes import CNN, PRIMUS, Recipe, recipes_for
from nnunet_anatomask.trainers.scheme_trainer import nnUNetTrainerMaskedPretraining
from nnunet_anatomask.trainers.stage2 import nnUNetTrainerFinetune, nnUNetTrainerStage2Recipe


def stage2_class(recipe: Recipe, primus_size: str = "") -> type:
    """``recipe`` on the plans' CNN (nnUNetTrainer_warmup) or on nnU-Net's Primus of ``primus_size``."""
    name = f"Stage2{'Primus' + primus_size if primus_size else 'CNN'}_{recipe.suffix}"
    bases = (RecipeMixin, nnUNetTrainerStage2Recipe)
    if primus_size:
        bases += (getattr(primus_trainers, f"nnUNet_Primus_{primus_size}_Trainer"),)
    return type(name, bases, {"recipe": recipe, "__module__": __name__, "__qualname__": name,
                              "__doc__": f"Stage 2 by the recipe '{recipe.suffix}': {recipe.summary}."})


def backbones(primus_sizes) -> list[tuple[str, str]]:
    return [(CNN, "")] + [(PRIMUS, size) for size in primus_sizes]


def make_stage2_classes(primus_sizes) -> dict[tuple[str, str], type]:
    """{(recipe suffix, Primus size or ''): stage-2 class} for every recipe of every backbone."""
    return {(r.suffix, size): stage2_class(r, size) for kind, size in backbones(primus_sizes) for r in recipes_for(kind)}


RECIPE_STAGE2: dict[tuple[str, str], type] = make_stage2_classes(("S", "B", "M", "L"))
globals().update({cls.__name__: cls for cls in RECIPE_STAGE2.values()})  # module-level, so pickle finds them


def recipe_trainers(scheme_trainers: dict[str, tuple[type, str]], module: str) -> dict[str, type]:
    """{name: class} of every recipe trainer. ``scheme_trainers``: {name: (recipe-less class, Primus size or '')}."""
    out = {}
    for name, (cls, size) in scheme_trainers.items():
        for recipe in recipes_for(PRIMUS if size else CNN):
            full = f"{name}_{recipe.suffix}"
            out[full] = type(full, (nnUNetTrainerMaskedPretraining, RECIPE_STAGE2[(recipe.suffix, size)]), {
                "scheme_class": cls.scheme_class, "stage1_trainer": name, "__module__": module, "__qualname__": full,
                "__doc__": f"{(cls.__doc__ or '').split(' Stage 2:')[0]} Stage 2: the recipe '{recipe.suffix}' "
                           f"({recipe.summary}); stage 1 shared with {name}."})
    for recipe in recipes_for(CNN):
        full = f"nnUNetTrainerFinetune_{recipe.suffix}"
        out[full] = type(full, (nnUNetTrainerFinetune, RECIPE_STAGE2[(recipe.suffix, "")]), {
            "__module__": module, "__qualname__": full,
            "__doc__": f"Stage 2 alone, from pretrained weights, by the recipe '{recipe.suffix}': {recipe.summary}."})
    return out
