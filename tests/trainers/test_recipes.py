"""Which parameters each recipe trains in each phase, through nnU-Net's own train_step on real batches of the
shared demo plans (2d, so that a step is cheap): a frozen encoder's weights are bit-identical after real steps, a
linear probe changes only the output layer, the sawtooth trains the decoder first and then everything; on a small
Primus the frozen encoder and MAE's layer-wise lr scales; a run resumed across a phase boundary."""
import os

import pytest
import torch
from dynamic_network_architectures.architectures.primus import Primus

from nnunet_anatomask import knobs
from nnunet_anatomask.trainers.registry import RECIPE_TRAINERS, nnUNetTrainerScratch
from nnunet_anatomask.trainers.registry import RECIPE_STAGE2
from nnunet_anatomask.transfer.parts import parts
from tests.trainers.helpers import make_trainer

EPOCHS = 4  # sawtooth: one epoch per phase (decoder warm-up, decoder poly, whole warm-up, whole poly)


@pytest.fixture
def checkpoint(demo3d, monkeypatch, tmp_path):
    """A 2d nnU-Net checkpoint of the demo plans (a Scratch network's weights), set as the pretrained weights."""
    scratch = make_trainer(demo3d, nnUNetTrainerScratch, monkeypatch, tmp_path / "scratch", config="2d")
    scratch.initialize()
    path = str(tmp_path / "pretrained.pth")
    torch.save({"network_weights": scratch.network.state_dict()}, path)
    monkeypatch.setenv(knobs.PRETRAINED_WEIGHTS, path)
    monkeypatch.setenv(knobs.FINETUNE_EPOCHS, str(EPOCHS))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.delenv(knobs.PRETRAINED_PARTS, raising=False)
    return scratch.network.state_dict()


def started(demo3d, name: str, monkeypatch, tmp_path):
    """A recipe trainer after nnU-Net's initialize() and our epoch-0 load, with its training batches."""
    trainer = make_trainer(demo3d, RECIPE_TRAINERS[name], monkeypatch, tmp_path / name, config="2d")
    trainer.initialize()
    trainer.load_pretrained()
    batches, _ = trainer.get_dataloaders()
    return trainer, batches


def changed_parts(trainer, epoch: int, batches) -> set:
    """Run nnU-Net's epoch start and one train_step at ``epoch``; the parts (stem / encoder / decoder / output
    layer) with any tensor that changed."""
    before = {k: v.clone() for k, v in trainer.network.state_dict().items()}
    trainer.current_epoch = epoch
    trainer.on_train_epoch_start()
    trainer.train_step(next(batches))
    after = trainer.network.state_dict()
    part = parts(trainer.network)
    return {("output" if ".seg_layers." in k else part[k]) for k in part if not torch.equal(after[k], before[k])}


@pytest.mark.parametrize("name, per_epoch", [
    ("nnUNetTrainerFinetune_frozenEnc", {0: {"decoder", "output"}, 1: {"decoder", "output"}}),
    ("nnUNetTrainerFinetune_linearProbe", {0: {"output"}, 3: {"output"}}),
    ("nnUNetTrainerFinetune_sawtooth", {0: {"decoder", "output"}, 2: {"stem", "encoder", "decoder", "output"}}),
])
def test_what_each_phase_trains(name, per_epoch, demo3d, checkpoint, monkeypatch, tmp_path):
    """Catches a phase that trains the wrong parameters (e.g. the decoder selected by ``network.decoder``, which
    holds the CNN's encoder as a submodule), a frozen parameter that still moves (weight decay, momentum) and a
    phase switch that does not happen."""
    trainer, batches = started(demo3d, name, monkeypatch, tmp_path)
    for epoch, expected in per_epoch.items():
        assert changed_parts(trainer, epoch, batches) == expected, (name, epoch, trainer.training_stage)


def test_frozen_encoder_is_the_checkpoint_bit_for_bit(demo3d, checkpoint, monkeypatch, tmp_path):
    """frozenEnc (nnssl's settings: encoder-only loading, batch 2, no deep supervision): after real steps in both
    of its phases every stem and encoder tensor equals the pretrained file's exactly, and none requires gradients
    (no backward pass through the encoder)."""
    trainer, batches = started(demo3d, "nnUNetTrainerFinetune_frozenEnc", monkeypatch, tmp_path)
    assert trainer.batch_size == 2 and trainer.enable_deep_supervision is False
    for epoch in (0, 1):
        changed_parts(trainer, epoch, batches)
    network, part = trainer.network, parts(trainer.network)
    encoder = [k for k, p in part.items() if p != "decoder"]
    assert encoder and all(torch.equal(network.state_dict()[k], checkpoint[k]) for k in encoder)
    assert not any(p.requires_grad for n, p in network.named_parameters() if part[n] != "decoder")


def test_resume_across_a_phase_boundary(demo3d, checkpoint, monkeypatch, tmp_path):
    """A checkpoint written at the end of the decoder phase holds a decoder-only optimiser; --c at the next epoch
    (the whole network's phase) loads it into that phase's optimiser, then switches. Catches: configuring the
    optimiser of the epoch to continue with before loading (a parameter-group size mismatch)."""
    trainer, batches = started(demo3d, "nnUNetTrainerFinetune_sawtooth", monkeypatch, tmp_path)
    changed_parts(trainer, 1, batches)  # train_decoder
    path = os.path.join(trainer.output_folder, "checkpoint_latest.pth")
    trainer.save_checkpoint(path)
    resumed = make_trainer(demo3d, RECIPE_TRAINERS["nnUNetTrainerFinetune_sawtooth"], monkeypatch,
                           tmp_path / "resumed", config="2d", continue_training=True)
    resumed.load_checkpoint(path)
    assert resumed.current_epoch == 2 and resumed.training_stage == "train_decoder"
    assert changed_parts(resumed, 2, resumed.get_dataloaders()[0]) == {"stem", "encoder", "decoder", "output"}
    assert resumed.training_stage == "warmup_all"


class TinyPrimus:
    """A recipe's Primus stage-2 class with a small Primus (48 wide, 2 blocks): nnU-Net's way to vary a trainer's
    network (override build_network_architecture); Primus S costs ~40 s a step on this CPU."""

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                                   enable_deep_supervision=True):
        return Primus(num_input_channels, 48, (8, 8, 8), num_output_channels, 2, 2, configuration_manager.patch_size,
                      drop_path_rate=0.2, scale_attn_inner=True, init_values=0.1)


def tiny_primus(recipe: str) -> type:
    return type(f"Tiny_{recipe}", (TinyPrimus, RECIPE_STAGE2[(recipe, "S")]), {})


def test_primus_frozen_encoder_and_layer_decay(demo3d, monkeypatch, tmp_path):
    """On Primus: frozenEnc trains only the patch decoder (``up_projection``); layerDecay gives every parameter
    group MAE's scale 0.75 ** (L + 1 - layer id): 1 for the patch decoder and final norm, 0.75 for the last block,
    0.75 ** 3 for the patch and position embedding (L = 2), and the lr of each group follows it."""
    monkeypatch.setenv(knobs.FINETUNE_EPOCHS, str(EPOCHS))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    frozen = make_trainer(demo3d, tiny_primus("frozenEnc"), monkeypatch, tmp_path / "frozen")
    frozen.initialize()
    batches, _ = frozen.get_dataloaders()
    assert changed_parts(frozen, 0, batches) == {"decoder"}
    assert {n.split(".")[0] for n, p in frozen.network.named_parameters() if p.requires_grad} == {"up_projection"}
    decay = make_trainer(demo3d, tiny_primus("layerDecay"), monkeypatch, tmp_path / "decay")
    decay.initialize()
    decay.on_train_epoch_start()
    groups = {g["layer_id"]: g for g in decay.optimizer.param_groups}
    assert {i: g["lr_scale"] for i, g in groups.items()} == pytest.approx({3: 1.0, 2: 0.75, 1: 0.75 ** 2,
                                                                           0: 0.75 ** 3})
    names = {id(p): n for n, p in decay.network.named_parameters()}
    assert {names[id(p)] for p in groups[0]["params"]} == {"down_projection.proj.weight", "down_projection.proj.bias",
                                                           "eva.pos_embed"}
    assert all(names[id(p)].startswith("eva.blocks.1.") for p in groups[2]["params"])
    assert groups[0]["lr"] == pytest.approx(groups[3]["lr"] * 0.75 ** 3) and groups[3]["lr"] > 0
    assert decay.optimizer.param_groups[0] is groups[3]  # the unscaled lr is the one nnU-Net logs


def test_a_recipe_trainer_keeps_stage1_with_its_recipe_less_trainer(demo3d, monkeypatch, tmp_path):
    """nnUNetTrainerRandomMask_nnssl (and its Primus sibling) read and write stage 1 in nnUNetTrainerRandomMask's
    folders, so every recipe shares one stage 1 (the real CLI run: test_end_to_end.py)."""
    for name, home in (("nnUNetTrainerRandomMask_nnssl", "nnUNetTrainerRandomMask"),
                       ("nnUNetTrainerRandomMask_PrimusS_frozenEnc", "nnUNetTrainerRandomMask_PrimusS")):
        trainer = make_trainer(demo3d, RECIPE_TRAINERS[name], monkeypatch, tmp_path)
        model = tmp_path / demo3d.dataset_name / f"{home}__nnUNetPlans__3d_fullres"
        assert trainer.stage1.final_checkpoint == str(model / "fold_0" / "pretraining" / "checkpoint_final.pth")
        assert trainer.stage1_output_folder("all") == str(model / "fold_all")
        assert trainer.output_folder == str(tmp_path / demo3d.dataset_name / f"{name}__nnUNetPlans__3d_fullres"
                                            / "fold_0")
