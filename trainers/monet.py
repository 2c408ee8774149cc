"""Trainers of MoNet (Knolle, Kaissis et al. 2021; :mod:`nnunet_ext.architectures.monet`).

``nnUNetTrainerMoNet``
    nnU-Net's recipe (poly-LR SGD, Dice+CE, deep supervision, nnU-Net's augmentation) with MoNet (``monet``:
    16·2^s widths) built from the plans. MoNet is a *shallow* network by design (the paper: "two global
    down-sampling operations", 256×256 → 64×64 bottleneck), so the trainer keeps the plans' first
    ``max_stages = 3`` stages (their strides, kernel sizes, conv op) and drops the deeper ones. The trimming is
    applied to the plans the trainer is given (so nnU-Net's deep-supervision scales, the saved ``plans.json`` and
    inference agree) and again, idempotently, when the network is built (the base trainer's ``max_stages``).
``nnUNetTrainerMoNetFullDepth``
    The same with every stage of the plans (``max_stages = None``).
``nnUNetTrainerMoNetPaper``
    The paper's recipe on top of ``nnUNetTrainerMoNet``: Nesterov-Adam, initial LR 5e-4, no weight decay, LR ×0.1
    when the validation loss has not improved for ≥ 2 epochs, Dice loss (nnU-Net's soft Dice, no CE). Deep
    supervision is kept (nnU-Net's weights). Differences to the paper that remain: nnU-Net's labels/softmax heads
    instead of one merged sigmoid foreground, nnU-Net's augmentation, nnU-Net's epoch definition.

Short schedules by name: ``nnUNetTrainerMoNet_1epoch_4iters``, ``nnUNetTrainerMoNetPaper_5epochs`` ...
"""
from __future__ import annotations

import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from torch.optim.lr_scheduler import ReduceLROnPlateau

from .base import nnUNetTrainerExt

class nnUNetTrainerMoNet(nnUNetTrainerExt):
    """MoNet with nnU-Net's recipe, at the paper's depth (the plans' first 3 stages)."""

    arch = "monet"
    max_stages = 3  # the paper's two global down-samplings


class nnUNetTrainerMoNetFullDepth(nnUNetTrainerMoNet):
    """MoNet with nnU-Net's recipe and every stage of the plans."""
    max_stages = None


class ValLossPlateau(ReduceLROnPlateau):
    """``ReduceLROnPlateau`` on nnU-Net's validation loss.

    nnU-Net calls ``lr_scheduler.step(current_epoch)`` at the start of each training epoch; that call is ignored
    here. The trainer calls :meth:`step_val_loss` once per epoch after validation instead. Keras'
    ``ReduceLROnPlateau(patience=2)`` (the paper's framework) reduces once ``wait >= 2`` epochs without improvement;
    PyTorch reduces once ``num_bad_epochs > patience``, hence ``patience=1`` here. ``threshold`` is absolute like
    Keras' ``min_delta`` (1e-4).
    """

    def __init__(self, optimizer, factor: float = 0.1, stagnation_epochs: int = 2, min_delta: float = 1e-4):
        super().__init__(optimizer, mode="min", factor=factor, patience=stagnation_epochs - 1,
                         threshold=min_delta, threshold_mode="abs")

    def step(self, *args, **kwargs):  # nnU-Net's per-epoch call with the epoch number
        return None

    def step_val_loss(self, val_loss: float) -> None:
        ReduceLROnPlateau.step(self, float(val_loss))


class nnUNetTrainerMoNetPaper(nnUNetTrainerMoNet):
    """MoNet with the paper's recipe: NAdam 5e-4, LR ×0.1 after ≥ 2 epochs without val-loss improvement, Dice loss."""

    hparams = {"initial_lr": 5e-4, "weight_decay": 0.0}

    def configure_optimizers(self):
        # Keras' Nadam: eps 1e-7, momentum schedule decay 0.004 (= torch's momentum_decay)
        optimizer = torch.optim.NAdam(self.network.parameters(), lr=self.initial_lr, betas=(0.9, 0.999), eps=1e-7,
                                      weight_decay=self.weight_decay, momentum_decay=4e-3)
        return optimizer, ValLossPlateau(optimizer, factor=0.1, stagnation_epochs=2)

    def _build_loss(self):
        # nnU-Net's loss with the CE (BCE for regions) term switched off: its soft Dice alone, with nnU-Net's
        # ignore-label handling and deep-supervision weights
        loss = super()._build_loss()
        inner = loss.loss if isinstance(loss, DeepSupervisionWrapper) else loss
        inner.weight_ce = 0
        return loss

    def on_validation_epoch_end(self, val_outputs):
        super().on_validation_epoch_end(val_outputs)
        self.lr_scheduler.step_val_loss(self.logger.get_value("val_losses", step=-1))
