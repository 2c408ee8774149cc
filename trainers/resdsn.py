"""Trainers of ResDSN and its variants (resdsn_c2f, Table 1) and of the two-stage method's 3D U-Net (two_stage_unet).

Stock ``nnUNetTrainer`` in everything but the network (see :class:`~nnunet_ext.trainers.base.nnUNetTrainerExt`),
plus what the paper gives a value for:

* L2 regularisation of Eq. (3): nnU-Net's SGD ``weight_decay`` set to the paper's 0.0005 (Sec. 4.2) for every
  ResDSN trainer (nnU-Net's default is 3e-5);
* deep supervision: by default nnU-Net's weighting of the ``n_stages - 1`` outputs (1/2^i, lowest output 0,
  normalised; with four stages that leaves the Conv3b head at weight 0). :class:`ResDSNPaperDSMixin` /
  ``nnUNetTrainerResDSNPaperDS`` uses the paper's Eq. (3) instead: main head 1, auxiliary heads ``xi_2 = 0.4``
  (Conv2b, 1/2 resolution) and ``xi_1 = 0.2`` (Conv3b, 1/4 resolution), every further head 0, not normalised.

Class names are stable; fine-stage (coarse-to-fine) trainers subclass them elsewhere.
"""
from __future__ import annotations

from typing import List

from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from nnunet_ext.architectures.resdsn import PAPER_WEIGHT_DECAY, XI_1, XI_2

from .base import nnUNetTrainerExt

__all__ = ["ResDSNPaperDSMixin", "nnUNetTrainerResDSN", "nnUNetTrainerFResDSN", "nnUNetTrainerSResDSN",
           "nnUNetTrainerDSN", "nnUNetTrainerResDSNPaperDS", "nnUNetTrainerResDSNPaper", "nnUNetTrainerTwoStageUNet"]


class ResDSNPaperDSMixin:
    """Deep-supervision weights of resdsn_c2f Eq. (3) on nnU-Net's outputs (highest resolution first):
    ``(1, xi_2, xi_1, 0, 0, ...)``, truncated to the number of outputs and not normalised (Eq. (3) adds the
    auxiliary losses to the main loss with weights ``xi_d``). Only the weights of nnU-Net's
    ``DeepSupervisionWrapper`` change; the loss itself (Dice + CE) is nnU-Net's.

    Which auxiliary head gets which xi is not stated explicitly in the paper ("two auxiliary loss layers connected
    from Conv2b and Conv3b ... xi_1 = 0.2 and xi_2 = 0.4"); we give the larger weight to the higher-resolution head
    (Conv2b), as nnU-Net does. Swap ``aux_weights`` in a subclass for the other reading.
    """

    #: weights of the auxiliary outputs 1, 2 (Conv2b at 1/2, Conv3b at 1/4 resolution)
    aux_weights = (XI_2, XI_1)

    def paper_ds_weights(self, n_outputs: int) -> List[float]:
        weights = [1.0, *self.aux_weights] + [0.0] * max(0, n_outputs - 1 - len(self.aux_weights))
        return weights[:n_outputs]

    def _build_loss(self):
        loss = super()._build_loss()
        if isinstance(loss, DeepSupervisionWrapper):
            weights = self.paper_ds_weights(len(loss.weight_factors))
            if self.is_ddp and not self._do_i_compile():
                # the same guard as nnU-Net's _build_loss: DDP complains about parameters without gradient
                weights = [w if w != 0 else 1e-6 for w in weights]
            loss.weight_factors = tuple(weights)
        return loss


class nnUNetTrainerResDSN(nnUNetTrainerExt):
    """ResDSN (long residual sums, deep supervision) adapted to the plans; weight decay 0.0005 (paper)."""
    arch = "resdsn"
    hparams = {"weight_decay": PAPER_WEIGHT_DECAY}


class nnUNetTrainerFResDSN(nnUNetTrainerResDSN):
    """FResDSN: long and short residual sums (resdsn_c2f Table 1)."""
    arch = "resdsn_full"


class nnUNetTrainerSResDSN(nnUNetTrainerResDSN):
    """SResDSN: short residual sums only (resdsn_c2f Table 1)."""
    arch = "sresdsn"


class nnUNetTrainerDSN(nnUNetTrainerResDSN):
    """DSN: no residual connections, deep supervision only (resdsn_c2f Table 1)."""
    arch = "dsn"


class nnUNetTrainerResDSNPaperDS(ResDSNPaperDSMixin, nnUNetTrainerResDSN):
    """ResDSN with the paper's deep-supervision weights (1, xi_2 = 0.4, xi_1 = 0.2, then 0)."""


class nnUNetTrainerResDSNPaper(ResDSNPaperDSMixin, nnUNetTrainerResDSN):
    """ResDSN closest to the paper inside nnU-Net: paper DS weights, batch norm + ReLU instead of the plans' ops."""
    arch_kwargs = {"paper_norm_nonlin": True}


class nnUNetTrainerTwoStageUNet(nnUNetTrainerExt):
    """The 3D U-Net of the two-stage method (two_stage_unet Sec. 2.3) adapted to the plans; the same trainer serves
    both stages (coarse on the 4x downsampled configuration, fine at full resolution)."""
    arch = "two_stage_unet"
