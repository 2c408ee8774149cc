"""Loss schedules of DLKUNet (seed paper ``dlkunet.txt``, Sec. 4.4) for ANY trainer of nnunet-ext, by name suffix.

Both schedules weight nnU-Net's compound loss (eq. 10)::

    Loss = alpha * DiceLoss + beta * CELoss                                                      (10)

``_phaseloss`` -- Phase-based Loss Strategy (eq. 11): ``(alpha, beta) = (0.6, 0.4)`` for epochs ``[1, 200]`` and
``(0.7, 0.3)`` for ``(200, 400]`` of the paper's 400 epochs, scaled to the trainer's ``num_epochs``: with the
1-based epoch ``x = current_epoch + 1``, the first pair while ``x <= num_epochs / 2``, the second after.

``_dynloss`` -- Dynamic Loss Strategy (eqs. 12-13), with ``sigma(x) = 1 / (1 + exp(-k (x - x0)))``::

    alpha = A + (1 - A) * (1 - sigma(x))                                                         (12)
    beta  = 1 + (B - 1) * (1 - sigma(x))                                                         (13)

with ``A = 0.3``, ``B = 0.7``, ``x0 = num_epochs / 2`` (the paper's "0.5 x epoch") and the 1-based epoch ``x``;
alpha goes from 1 to A and beta from B to 1. k, which the paper does not give, is ``20 / num_epochs`` (class
attribute ``dynloss_k_times_epochs = 20``: ``k * x0 = 10`` whatever the length of training).

Both are applied scaled to nnU-Net's Dice + CE total: ``(alpha, beta) * 2 / (alpha + beta)`` every epoch
(:func:`scaled_weights`; class attribute ``loss_weight_total = 2.0``, ``None`` applies the raw weights), i.e. the
paper's ratio alpha : beta at nnU-Net's gradient scale. Why k and the scaling, and how the authors' public training
script differs from eqs. 12-13: docs/dlkunet.md, "Loss schedules".

How it works: the suffix contributes a mixin placed before the trainer in the MRO. It overrides only
``_build_loss`` (keeps nnU-Net's loss -- Dice+CE, or Dice+BCE for region-based training -- wrapped in nnU-Net's
``DeepSupervisionWrapper`` when deep supervision is on, and remembers the inner compound loss) and
``on_train_epoch_start`` (sets ``weight_dice = alpha`` and ``weight_ce = beta`` on that inner loss for the current
epoch, so every deep-supervision scale and the validation loss use the epoch's weights; logged to the training log).
Names: ``<Trainer>_phaseloss``, ``<Trainer>_dynloss``, combined with the schedule suffixes, e.g.
``nnUNetTrainerDLKUNetS_dynloss_1epoch_4iters``; both are one suffix kind, so ``_phaseloss_dynloss`` is no name.
"""
from __future__ import annotations

import math
from typing import Tuple

from torch import nn

from ._naming import register_suffix

__all__ = ["PHASES", "phase_weights", "dynamic_weights", "scaled_weights", "NNUNET_LOSS_TOTAL",
           "find_compound_loss", "LossScheduleMixin", "PhaseLossMixin", "DynamicLossMixin"]

#: eq. 11: (alpha, beta) in the first and in the second half of training
PHASES = ((0.6, 0.4), (0.7, 0.3))
#: eqs. 12-13 defaults (Sec. 4.4: "A and B usually set as 0.3 and 0.7")
DYN_A, DYN_B = 0.3, 0.7
#: k = DYN_K_TIMES_EPOCHS / num_epochs (k * x0 = 10); the paper leaves k open
DYN_K_TIMES_EPOCHS = 20.0
#: nnU-Net's Dice + CE: weight_dice = weight_ce = 1
NNUNET_LOSS_TOTAL = 2.0


def _check(epoch: int, num_epochs: int) -> None:
    if num_epochs < 1:
        raise ValueError(f"num_epochs must be >= 1, got {num_epochs}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0 (nnU-Net's 0-based current_epoch), got {epoch}")


def phase_weights(epoch: int, num_epochs: int) -> Tuple[float, float]:
    """eq. 11 scaled to ``num_epochs``; ``epoch`` is nnU-Net's 0-based ``current_epoch``."""
    _check(epoch, num_epochs)
    x = epoch + 1
    return PHASES[0] if x <= num_epochs / 2 else PHASES[1]


def dynamic_weights(epoch: int, num_epochs: int, A: float = DYN_A, B: float = DYN_B, k: float = None,
                    x0: float = None) -> Tuple[float, float]:
    """eqs. 12-13; ``epoch`` is nnU-Net's 0-based ``current_epoch`` (x = epoch + 1), ``x0 = num_epochs / 2`` and
    ``k = 20 / num_epochs`` unless given."""
    _check(epoch, num_epochs)
    x = epoch + 1
    x0 = num_epochs / 2 if x0 is None else x0
    k = DYN_K_TIMES_EPOCHS / num_epochs if k is None else k
    t = -k * (x - x0)
    # numerically safe logistic: sigma = 1 / (1 + e^t)
    sigma = 1.0 / (1.0 + math.exp(t)) if t < 700 else 0.0
    alpha = A + (1 - A) * (1 - sigma)  # eq. 12
    beta = 1 + (B - 1) * (1 - sigma)  # eq. 13
    return alpha, beta


def scaled_weights(weights: Tuple[float, float], total: float = NNUNET_LOSS_TOTAL) -> Tuple[float, float]:
    """``(alpha, beta)`` rescaled to ``alpha + beta = total`` (the ratio alpha : beta is kept)."""
    alpha, beta = weights
    if not alpha + beta > 0:
        raise ValueError(f"loss weights alpha={alpha}, beta={beta} do not sum to a positive number")
    f = total / (alpha + beta)
    return alpha * f, beta * f


def find_compound_loss(loss: nn.Module) -> nn.Module:
    """The module of nnU-Net's loss that holds ``weight_dice`` and ``weight_ce`` (``DC_and_CE_loss`` /
    ``DC_and_BCE_loss``), also inside ``DeepSupervisionWrapper``."""
    for m in loss.modules():
        if hasattr(m, "weight_dice") and hasattr(m, "weight_ce"):
            return m
    raise TypeError(f"loss schedule: {type(loss).__name__} has no Dice+CE compound loss (weight_dice/weight_ce) "
                    f"to schedule")


class LossScheduleMixin:
    """Puts ``(alpha, beta) = self.loss_weights(current_epoch)`` on nnU-Net's compound loss every epoch (eq. 10),
    scaled to ``alpha + beta = loss_weight_total`` (nnU-Net's 2; ``None``: the paper's raw weights)."""

    loss_schedule_name = "constant"
    loss_weight_total = NNUNET_LOSS_TOTAL

    def paper_loss_weights(self, epoch: int) -> Tuple[float, float]:  # pragma: no cover - overridden
        return 1.0, 1.0

    def loss_weights(self, epoch: int) -> Tuple[float, float]:
        w = self.paper_loss_weights(epoch)
        return w if self.loss_weight_total is None else scaled_weights(w, self.loss_weight_total)

    def _build_loss(self):
        loss = super()._build_loss()
        self._scheduled_loss = find_compound_loss(loss)
        self._set_loss_weights(log=False)
        return loss

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._set_loss_weights(log=True)

    def _set_loss_weights(self, log: bool) -> None:
        alpha, beta = self.loss_weights(self.current_epoch)
        self._scheduled_loss.weight_dice = alpha
        self._scheduled_loss.weight_ce = beta
        if log:
            self.print_to_log_file(f"loss schedule {self.loss_schedule_name}: alpha (Dice) = {alpha:.4f}, "
                                   f"beta (CE) = {beta:.4f}")


class PhaseLossMixin(LossScheduleMixin):
    """Phase-based Loss Strategy (Sec. 4.4, eq. 11), scaled to ``num_epochs``."""

    loss_schedule_name = "phaseloss"

    def paper_loss_weights(self, epoch: int) -> Tuple[float, float]:
        return phase_weights(epoch, self.num_epochs)


class DynamicLossMixin(LossScheduleMixin):
    """Dynamic Loss Strategy (Sec. 4.4, eqs. 12-13), A = 0.3, B = 0.7, x0 = num_epochs / 2, k = 20 / num_epochs."""

    loss_schedule_name = "dynloss"
    dynloss_A = DYN_A
    dynloss_B = DYN_B
    dynloss_k_times_epochs = DYN_K_TIMES_EPOCHS

    def paper_loss_weights(self, epoch: int) -> Tuple[float, float]:
        return dynamic_weights(epoch, self.num_epochs, self.dynloss_A, self.dynloss_B,
                               k=self.dynloss_k_times_epochs / self.num_epochs)


_MIXINS = {"phaseloss": PhaseLossMixin, "dynloss": DynamicLossMixin}


def _build(match):
    return {}, {}, (_MIXINS[match.group(1)],)


register_suffix("lossschedule", r"(phaseloss|dynloss)", _build,
                "DLKUNet's loss schedules (Sec. 4.4): phaseloss = eq. 11, dynloss = eqs. 12-13 (k = 20 / num_epochs); "
                "weights scaled to nnU-Net's Dice + CE total of 2")
