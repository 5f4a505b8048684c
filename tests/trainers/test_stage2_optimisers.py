"""Every trainer nnU-Net's lookup finds in our trainer folder fine-tunes with the recipe it documents
(docs/usage.md, docs/backbones.md): optimiser class, start lr, weight decay, momentum or betas, warm-up length,
deep supervision. Built in-process as nnU-Net builds them, on the shared tiny 3D plans.

Catches, among others: the Primus trainers' AbstractPrimus start lr 3e-4 overwritten by the CNN recipe's 1e-2 in
our __init__ (AdamW at 1e-2), a knob that does not reach a trainer, or a trainer added without a recipe here.

Recipe trainers (``<trainer>_<recipe>``, docs/recipes.md): each recipe's stage-2 class is built and checked against
the table RECIPE below, written here independently of the recipe module (optimiser, start lr, weight decay,
momentum or betas, every phase's epochs, lr shape and peak, what it trains, batch size, deep supervision, loaded
parts, layer-wise lr scales); every found recipe trainer is then checked to be exactly the stage-1 base (or
nnUNetTrainerFinetune) in front of that class with nothing of its own, and two are built to agree.
"""
import importlib.util
import inspect
import os

import pytest
import torch
from dynamic_network_architectures.architectures.primus import Primus
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

import nnunet_anatomask
from nnunet_anatomask import knobs
from nnunet_anatomask.trainers.registry import RECIPE_STAGE2
from nnunet_anatomask.trainers.scheme_trainer import Stage1Mixin
from nnunet_anatomask.trainers.stage2 import nnUNetTrainerFinetune
from tests.trainers.helpers import make_trainer

CNN = {"optimizer": torch.optim.SGD, "lr": 1e-2, "weight_decay": 3e-5, "momentum": 0.99, "nesterov": True,
       "deep_supervision": True}
PRIMUS = {"optimizer": torch.optim.AdamW, "lr": 3e-4, "weight_decay": 5e-2, "betas": (0.9, 0.98),
          "deep_supervision": False}
EPOCHS = 40  # nnUNet_anatomask_finetune_epochs: the warm-up is 5 % of the epochs (2 here, 50 of nnU-Net's 1000)


def found_trainers() -> dict[str, type]:
    """The trainer classes nnU-Net's lookup can find in our folder: what its find_objects imports from there."""
    folder = os.path.join(os.path.dirname(nnunet_anatomask.__file__), "_ext_trainers")
    found = {}
    for file in sorted(os.listdir(folder)):
        if file.endswith(".py"):
            spec = importlib.util.spec_from_file_location(file[:-3], os.path.join(folder, file))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            found.update({n: c for n, c in inspect.getmembers(module, inspect.isclass)
                          if issubclass(c, nnUNetTrainer)})
    return found


def intended_recipe(name: str) -> dict:
    return PRIMUS if "_Primus" in name else CNN


TRAINERS = found_trainers()
RECIPE_SUFFIXES = ("_nnssl", "_sawtooth", "_frozenEnc", "_linearProbe", "_layerDecay")
FULL = {n: c for n, c in TRAINERS.items() if not n.endswith(RECIPE_SUFFIXES)}
WITH_RECIPE = {n: c for n, c in TRAINERS.items() if n.endswith(RECIPE_SUFFIXES)}


def test_every_found_trainer_is_ours_and_has_a_recipe():
    assert len(FULL) >= 27  # 5 schemes x (CNN + 4 Primus sizes) + Scratch + Finetune
    # per scheme 4 CNN recipes + 4 Primus sizes x 5 recipes; Finetune x 4 CNN recipes
    assert len(WITH_RECIPE) == 24 * (len(FULL) - 2) // 5 + 4
    assert all(c.__module__.startswith("nnunet_anatomask.") for c in TRAINERS.values())


def warmup_optimiser(trainer) -> tuple[torch.optim.Optimizer, object]:
    """The optimiser and scheduler nnU-Net's on_train_epoch_start makes at epoch 0 (configure_optimizers(
    'warmup_all')), for a small stand-in network: the settings do not depend on the network (Primus L has 300 M
    parameters); test_a_real_initialize_agrees checks that on a real one."""
    trainer.network = torch.nn.Linear(2, 2)
    return trainer.configure_optimizers("warmup_all")


def assert_recipe(trainer, optimizer, scheduler, recipe: dict, lr: float) -> None:
    group = optimizer.param_groups[0]
    assert type(optimizer) is recipe["optimizer"]
    assert trainer.initial_lr == pytest.approx(lr) and scheduler.max_lr == pytest.approx(lr)
    assert group["weight_decay"] == pytest.approx(recipe["weight_decay"])
    if recipe["optimizer"] is torch.optim.SGD:
        assert (group["momentum"], group["nesterov"]) == (recipe["momentum"], recipe["nesterov"])
    else:
        assert tuple(group["betas"]) == recipe["betas"]
    assert trainer.warmup_duration_whole_net == scheduler.max_steps == 2  # 5 % of 40 epochs
    assert trainer.num_epochs == EPOCHS
    assert trainer.enable_deep_supervision is recipe["deep_supervision"]


@pytest.fixture
def epochs(monkeypatch):
    monkeypatch.setenv(knobs.FINETUNE_EPOCHS, str(EPOCHS))
    monkeypatch.delenv(knobs.FINETUNE_LR, raising=False)
    monkeypatch.delenv(knobs.PRETRAINED_PARTS, raising=False)


@pytest.mark.parametrize("name", sorted(FULL))
def test_stage2_optimiser_is_the_documented_recipe(name, epochs, demo3d, monkeypatch, tmp_path):
    trainer = make_trainer(demo3d, TRAINERS[name], monkeypatch, tmp_path)
    recipe = intended_recipe(name)
    assert_recipe(trainer, *warmup_optimiser(trainer), recipe, recipe["lr"])


@pytest.mark.parametrize("name", ["nnUNetTrainerScratch", "nnUNetTrainerRandomMask", "nnUNetTrainerFinetune",
                                  "nnUNetTrainerAnatoMask_PrimusS"])
def test_finetune_lr_knob_sets_the_start_lr(name, epochs, demo3d, monkeypatch, tmp_path):
    monkeypatch.setenv(knobs.FINETUNE_LR, "1e-3")
    trainer = make_trainer(demo3d, TRAINERS[name], monkeypatch, tmp_path)
    assert_recipe(trainer, *warmup_optimiser(trainer), intended_recipe(name), 1e-3)


def test_a_real_initialize_agrees(epochs, demo3d, monkeypatch, tmp_path):
    """nnU-Net's own initialize() on the real Primus S network builds the same optimiser as the stand-in."""
    trainer = make_trainer(demo3d, TRAINERS["nnUNetTrainerRandomMask_PrimusS"], monkeypatch, tmp_path)
    trainer.initialize()
    assert_recipe(trainer, trainer.optimizer, trainer.lr_scheduler, PRIMUS, PRIMUS["lr"])


# --- recipes ------------------------------------------------------------------------------------------------
# (name, trains, lr shape, first epoch, end epoch, peak as a factor of the start lr) of every phase at 40 epochs
WARMUP_THEN_POLY = [("warmup_all", "all", "warmup", 0, 2, 1), ("train", "all", "poly", 2, 40, 1)]
RECIPE = {  # recipe -> backbone -> what docs/recipes.md promises
    "nnssl": {b: {"lr": lr, "batch": 2, "deep_supervision": False, "loading": "encoder", "phases": WARMUP_THEN_POLY}
              for b, lr in (("cnn", 1e-3), ("primus", 1e-4))},
    "sawtooth": {b: {"lr": lr, "batch": 2, "deep_supervision": False, "loading": "encoder", "phases": [
        ("warmup_decoder", "decoder", "warmup", 0, 1, f), ("train_decoder", "decoder", "poly", 1, 2, f),
        ("warmup_all", "all", "warmup", 2, 4, 1), ("train", "all", "poly", 4, 40, 1)]}
        for b, lr, f in (("cnn", 1e-3, 1), ("primus", 1e-4, 0.01))},
    "frozenEnc": {b: {"lr": lr, "batch": 2, "deep_supervision": False, "loading": "encoder", "phases": [
        ("warmup_decoder", "decoder", "warmup", 0, 4, 1), ("train_decoder", "decoder", "poly", 4, 40, 1)]}
        for b, lr in (("cnn", 1e-3), ("primus", 1e-4))},
    "linearProbe": {b: {"lr": lr, "batch": None, "deep_supervision": ds, "loading": "all", "phases": [
        ("warmup_head", "head", "warmup", 0, 2, 1), ("train_head", "head", "poly", 2, 40, 1)]}
        for b, lr, ds in (("cnn", 1e-2, True), ("primus", 3e-4, False))},
    "layerDecay": {"primus": {"lr": 3e-4, "batch": None, "deep_supervision": False, "loading": "all",
                              "phases": WARMUP_THEN_POLY, "layer_decay": 0.75}},
}


def stand_in(backbone: str) -> torch.nn.Module:
    """A small network of the backbone's family (the parts a phase trains are found by name): the settings do not
    depend on its size; test_recipes.py trains the real ones."""
    if backbone == "primus":
        return Primus(1, 48, (8, 8, 8), 2, 2, 2, (16, 16, 16))
    return PlainConvUNet(1, 3, (4, 8, 16), torch.nn.Conv3d, 3, (1, 2, 2), 2, 2, (1, 1), True, torch.nn.InstanceNorm3d,
                         {"affine": True}, deep_supervision=True)


def trains(network: torch.nn.Module, what: str) -> set:
    """The parameter names a phase training ``what`` must train (by dna's names, written out here)."""
    names = {n for n, _ in network.named_parameters()}
    if what == "all":
        return names
    if what == "decoder":
        return {n for n in names if n.startswith(("decoder.", "up_projection."))}
    last = f"up_projection.decode.{len(network.up_projection.decode) - 1}." if hasattr(network, "up_projection") \
        else "decoder.seg_layers."
    return {n for n in names if n.startswith(last)}


def assert_recipe_trainer(trainer, backbone: str, recipe: dict, lr: float) -> None:
    """The settings of ``recipe`` on ``backbone``, phase by phase, on a stand-in network."""
    base = CNN if backbone == "cnn" else PRIMUS
    assert trainer.num_epochs == EPOCHS and trainer.initial_lr == pytest.approx(lr)
    assert trainer.enable_deep_supervision is recipe["deep_supervision"]
    assert trainer.recipe.batch_size == recipe["batch"] and trainer.pretrained_loading() == recipe["loading"]
    trainer.network = stand_in(backbone)
    names = {id(p): n for n, p in trainer.network.named_parameters()}
    for name, what, shape, start, end, factor in recipe["phases"]:
        trainer.current_epoch = start
        optimizer, scheduler = trainer.configure_optimizers()
        trainer.optimizer, trainer.lr_scheduler = optimizer, scheduler
        assert trainer.training_stage == name
        assert type(optimizer) is base["optimizer"]
        for group in optimizer.param_groups:
            assert group["weight_decay"] == pytest.approx(base["weight_decay"])
            if base["optimizer"] is torch.optim.SGD:
                assert (group["momentum"], group["nesterov"]) == (base["momentum"], base["nesterov"])
            else:
                assert tuple(group["betas"]) == base["betas"]
        trained = {names[id(p)] for g in optimizer.param_groups for p in g["params"]}
        assert trained == trains(trainer.network, what), name
        assert {n for n, p in trainer.network.named_parameters() if p.requires_grad} == trained
        assert (scheduler.shape, scheduler.start, scheduler.end) == (shape, start, end), name
        assert scheduler.max_lr == pytest.approx(lr * factor), name
        scales = sorted({round(g.get("lr_scale", 1.0), 6) for g in optimizer.param_groups})
        decay = recipe.get("layer_decay")
        assert scales == ([round(decay ** k, 6) for k in (3, 2, 1, 0)] if decay else [1.0])  # 2 blocks: ids 0..3


def recipe_classes() -> dict[str, tuple]:
    """{label: (class, recipe, backbone)}: every recipe's stage-2 class and nnUNetTrainerFinetune's recipes."""
    out = {cls.__name__: (cls, recipe, "primus" if size else "cnn") for (recipe, size), cls in RECIPE_STAGE2.items()}
    out.update({n: (c, n.rsplit("_", 1)[1], "cnn") for n, c in WITH_RECIPE.items()
                if n.startswith("nnUNetTrainerFinetune_")})
    return out


RECIPE_CLASSES = recipe_classes()


def test_every_recipe_of_the_table_exists():
    assert {(r, b) for _, r, b in RECIPE_CLASSES.values()} == {(r, b) for r, v in RECIPE.items() for b in v}


@pytest.mark.parametrize("label", sorted(RECIPE_CLASSES))
def test_recipe_optimiser_and_phases(label, epochs, demo3d, monkeypatch, tmp_path):
    cls, recipe, backbone = RECIPE_CLASSES[label]
    trainer = make_trainer(demo3d, cls, monkeypatch, tmp_path)
    expected = RECIPE[recipe][backbone]
    assert_recipe_trainer(trainer, backbone, expected, expected["lr"])


def test_recipe_knobs_win(epochs, demo3d, monkeypatch, tmp_path):
    """nnUNet_anatomask_finetune_lr over the recipe's start lr, nnUNet_anatomask_pretrained_parts over its parts."""
    monkeypatch.setenv(knobs.FINETUNE_LR, "5e-3")
    monkeypatch.setenv(knobs.PRETRAINED_PARTS, "all")
    trainer = make_trainer(demo3d, RECIPE_STAGE2[("sawtooth", "")], monkeypatch, tmp_path)
    assert trainer.initial_lr == pytest.approx(5e-3) and trainer.pretrained_loading() == "all"


def stage2_part(name: str) -> type:
    suffix = name.rsplit("_", 1)[1]
    size = name.split("_Primus")[1][0] if "_Primus" in name else ""
    return RECIPE_STAGE2[(suffix, size)]


@pytest.mark.parametrize("name", sorted(WITH_RECIPE))
def test_every_recipe_trainer_is_its_stage2_class_with_a_stage1_front(name):
    """Cheap, for all 124 names: the bases are (stage-1 base or Finetune, the recipe's stage-2 class) and the class
    adds nothing but its scheme and where its stage 1 lives, and the stage-1 base touches no optimiser setting; so
    each has the optimiser its stage-2 class was checked for above."""
    cls = WITH_RECIPE[name]
    front = nnUNetTrainerFinetune if name.startswith("nnUNetTrainerFinetune_") else Stage1Mixin
    assert cls.__bases__ == (front, stage2_part(name))
    assert set(cls.__dict__) <= {"scheme_class", "stage1_trainer", "__doc__", "__module__", "__qualname__"}
    for method in ("configure_optimizers", "optimiser_for_checkpoint", "on_train_epoch_start", "configure_phase",
                   "make_optimizer", "pretrained_loading", "initialize"):
        assert method not in front.__dict__ or method == "initialize", method  # the front shadows none of them
        assert getattr(cls, method) is getattr(stage2_part(name), method) or method == "initialize", method
    if front is Stage1Mixin:
        assert cls.stage1_trainer == name.rsplit("_", 1)[0] and cls.stage1_trainer in FULL


@pytest.mark.parametrize("name", ["nnUNetTrainerRandomMask_nnssl", "nnUNetTrainerAnatoMask_PrimusS_sawtooth"])
def test_a_built_recipe_trainer_agrees(name, epochs, demo3d, monkeypatch, tmp_path):
    """Built whole (stage-1 runner included), a recipe trainer has its stage-2 class's settings."""
    trainer = make_trainer(demo3d, WITH_RECIPE[name], monkeypatch, tmp_path)
    recipe, backbone = name.rsplit("_", 1)[1], "primus" if "_Primus" in name else "cnn"
    assert_recipe_trainer(trainer, backbone, RECIPE[recipe][backbone], RECIPE[recipe][backbone]["lr"])
