"""The recipe trainers' classes (docs/recipes.md): per stage-2 recipe and backbone variant one stage-2 class,
``(RecipeMixin, <the variant's stage-2 trainer>)`` (nnUNetTrainerStage2Recipe on the CNN, nnU-Net's
nnUNet_Primus_<size>_Trainer with our Stage2Mixin on Primus); a recipe trainer is a scheme's Stage1Mixin (or
nnUNetTrainerFinetune) in front of it, so its optimiser is that class's: test_stage2_optimisers.py builds each
stage-2 class and checks that every recipe trainer has exactly these bases. A scheme's recipe trainers keep stage 1
in the folder of the recipe-less trainer (``stage1_trainer``): stage 1 runs once for all recipes. registry.py names
them all.
"""
from __future__ import annotations

from nnunet_anatomask.recipes import Recipe, recipes_for
from nnunet_anatomask.trainers.recipe_trainer import RecipeMixin


def stage2_class(recipe: Recipe, row) -> type:
    """``recipe`` on the backbone variant ``row`` (registry.Stage2Row)."""
    name = f"Stage2{row.suffix.lstrip('_') or 'CNN'}_{recipe.suffix}"
    return type(name, (RecipeMixin, row.trainer), {"recipe": recipe, "__module__": __name__, "__qualname__": name,
                                                   "__doc__": f"Stage 2 by the recipe '{recipe.suffix}': "
                                                              f"{recipe.summary}."})


def variant(row) -> str:
    """The key of a backbone variant in RECIPE_STAGE2: '' for the CNN, the Primus size ('S', ...) for Primus."""
    return row.suffix.removeprefix("_Primus")


def recipe_stage2_classes(rows) -> dict[tuple[str, str], type]:
    """{(recipe suffix, variant): stage-2 class} for every recipe of every backbone variant; each is also made a
    module-level name of this module (so pickle finds it)."""
    classes = {(r.suffix, variant(row)): stage2_class(r, row) for row in rows for r in recipes_for(row.kind)}
    globals().update({cls.__name__: cls for cls in classes.values()})
    return classes


def recipe_trainer(bases: tuple, name: str, module: str, attributes: dict, recipe: Recipe) -> type:
    """A recipe trainer: ``bases`` (a scheme's Stage1Mixin with ``attributes`` naming its scheme and stage-1
    trainer, or nnUNetTrainerFinetune), then the recipe's stage-2 class."""
    front = f"Stage 1: {attributes['scheme_class'].name}, shared with {attributes['stage1_trainer']}." \
        if "scheme_class" in attributes else "Stage 2 alone, from pretrained weights."
    doc = f"{front} Stage 2: the recipe '{recipe.suffix}' ({recipe.summary})."
    return type(name, bases, {**attributes, "__module__": module, "__qualname__": name, "__doc__": doc})
