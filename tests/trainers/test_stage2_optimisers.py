"""Every trainer nnU-Net's lookup finds in our trainer folder fine-tunes with the recipe it documents
(docs/usage.md, docs/backbones.md): optimiser class, start lr, weight decay, momentum or betas, warm-up length,
deep supervision. Built in-process as nnU-Net builds them, on the shared tiny 3D plans.

Catches, among others: the Primus trainers' AbstractPrimus start lr 3e-4 overwritten by the CNN recipe's 1e-2 in
our __init__ (AdamW at 1e-2), a knob that does not reach a trainer, or a trainer added without a recipe here.
"""
import importlib.util
import inspect
import os

import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

import nnunet_anatomask
from nnunet_anatomask import knobs
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


def test_every_found_trainer_is_ours_and_has_a_recipe():
    assert len(TRAINERS) >= 27  # 5 schemes x (CNN + 4 Primus sizes) + Scratch + Finetune
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


@pytest.mark.parametrize("name", sorted(TRAINERS))
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
