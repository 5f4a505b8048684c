"""The stage-2 recipes (docs/recipes.md): what trains when, at which lr, from which pretrained parts.

A recipe is selected by a trainer-name suffix, in nnU-Net's habit for training variants
(``nnUNetTrainer_250epochs``; nnssl's ``PretrainedTrainer_sawtooth``, ``PretrainedTrainer_Primus_frozenEnc``):
``nnUNetTrainerAnatoMask_nnssl``, ``nnUNetTrainerAnatoMask_PrimusM_layerDecay``, ``nnUNetTrainerFinetune_sawtooth``.
Each suffix gets its own results folder, so ``nnUNetv2_predict -tr`` and ``nnUNetv2_find_best_configuration``
tell recipes apart; stage 1 is shared (scheme_trainer.py finds the recipe-less trainer's stage-1 checkpoint).
``full``, today's recipe, has no suffix: nnU-Net's nnUNetTrainer_warmup on the CNN, nnU-Net's Primus trainers on
Primus, everything loaded but the output layer.

Parity sources (read for this table): nnU-Net main ``nnunetv2/training/nnUNetTrainer/pretraining/
pretrainedTrainer.py`` (PretrainedTrainer, PretrainedTrainer_Primus), nnssl's fine-tuning fork (TaWald/nnUNet)
``pretraining/sawtooth_trainer.py`` (PretrainedTrainer_sawtooth, PretrainedTrainer_Primus_sawtooth),
``pretraining/frozen_enc_trainer.py`` (PretrainedTrainer_Primus_frozenEnc); MAE (He et al., CVPR 2022)
``util/lr_decay.py`` for the layer-wise decay.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

CNN, PRIMUS = "cnn", "primus"
ALL, DECODER, HEAD = "all", "decoder", "head"   # what a phase trains: every parameter, the decoder, the output layer
WARMUP, POLY = "warmup", "poly"                 # lr shape: linear rise from 0 to the peak; poly decay to 0


@dataclass(frozen=True)
class Phase:
    """A stretch of stage 2: which parameters train, the lr's shape, its share of the run (of nnU-Net's 1000
    epochs; ``None``: the rest), the peak as a factor of the start lr (per backbone, default 1)."""

    name: str
    trains: str
    shape: str
    share: Optional[float]
    lr_factor: tuple = ()          # ((backbone, factor), ...)

    def factor(self, backbone: str) -> float:
        return dict(self.lr_factor).get(backbone, 1.0)


@dataclass(frozen=True)
class Recipe:
    suffix: str                    # the trainer-name suffix (without '_')
    summary: str
    phases: tuple
    start_lr: tuple = ()           # ((backbone, lr), ...); a backbone not listed keeps its base trainer's lr
    batch_size: Optional[int] = None            # None: the plans'
    deep_supervision: Optional[bool] = None     # None: the base trainer's
    loading: str = "all"           # the pretrained parts loaded by default: 'all' | 'encoder'
    layer_decay: Optional[float] = None         # MAE's layer-wise lr decay (Primus)
    backbones: tuple = (CNN, PRIMUS)

    def lr(self, backbone: str) -> Optional[float]:
        return dict(self.start_lr).get(backbone)


# nnssl's warm-up: 50 of 1000 epochs, linear, then poly (nnUNetTrainer_warmup, PretrainedTrainer)
WARMUP_THEN_POLY = (Phase("warmup_all", ALL, WARMUP, 0.05), Phase("train", ALL, POLY, None))
NNSSL = dict(start_lr=((CNN, 1e-3), (PRIMUS, 1e-4)), batch_size=2, deep_supervision=False, loading="encoder")

RECIPES: dict[str, Recipe] = {r.suffix: r for r in (
    Recipe("nnssl", "nnU-Net main's PretrainedTrainer / PretrainedTrainer_Primus", WARMUP_THEN_POLY, **NNSSL),
    Recipe("sawtooth", "decoder first (warm-up, poly), then the whole network (warm-up, poly); nnssl's settings",
           (Phase("warmup_decoder", DECODER, WARMUP, 0.025, ((PRIMUS, 0.01),)),
            Phase("train_decoder", DECODER, POLY, 0.025, ((PRIMUS, 0.01),)),
            *WARMUP_THEN_POLY), **NNSSL),
    Recipe("frozenEnc", "the encoder (and stem) frozen, the decoder trained; nnssl's settings",
           (Phase("warmup_decoder", DECODER, WARMUP, 0.1), Phase("train_decoder", DECODER, POLY, None)), **NNSSL),
    Recipe("linearProbe", "only the output layer trained on the pretrained network (encoder and decoder loaded)",
           (Phase("warmup_head", HEAD, WARMUP, 0.05), Phase("train_head", HEAD, POLY, None))),
    Recipe("layerDecay", "nnU-Net's Primus recipe with MAE's layer-wise lr decay 0.75", WARMUP_THEN_POLY,
           layer_decay=0.75, backbones=(PRIMUS,)),
)}


def recipes_for(backbone: str) -> list[Recipe]:
    return [r for r in RECIPES.values() if backbone in r.backbones]
