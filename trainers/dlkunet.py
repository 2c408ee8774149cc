"""Trainers of DLKUNet (seed paper ``dlkunet.txt``; :mod:`nnunet_ext.architectures.dlkunet`).

``nnUNetTrainerDLKUNetS`` / ``M`` / ``L``
    the paper's networks (Sec. 3.4, Table 1): 3 / 4 / 5 encoder stages, C = 96 doubling per stage, on the plans'
    first 3 / 4 / 5 stages (their strides and kernels) with nnU-Net's recipe (SGD poly-LR, Dice + CE, deep
    supervision, nnU-Net's augmentation and inference). The plans the trainer is given are trimmed to that depth
    (so nnU-Net's deep-supervision scales, the saved ``plans.json`` and inference agree); plans with fewer stages
    stop training before anything is written (one line, exit status 2).
``nnUNetTrainerDLKUNetL5DW`` / ``L7DW`` / ``LLKA1`` / ``LLKA2``
    Table 5's variants of DLKUNet-L (``dlkunet_l_5dw`` ...), nnU-Net's recipe.
``nnUNetTrainerDLKUNetSPaper`` / ``MPaper`` / ``LPaper``
    Sec. 4.3's recipe on top: Adam, initial LR 1e-3, weight decay 1e-5, LR x0.1 every 20 epochs, 1e-5 from epoch
    200 on; 400 epochs (eq. 11's range).
``nnUNetTrainerDLKUNetS_nnUNetWidth`` / ``M_`` / ``L_``
    nnunet-ext's adaptation, not the paper's rule: every stage of the plans, the plans' widths x 1/4, 1/2, 1.

The paper's loss schedules (Sec. 4.4) are name suffixes on any trainer (:mod:`nnunet_ext.trainers.loss_schedules`):
``nnUNetTrainerDLKUNetLPaper_phaseloss``, ``nnUNetTrainerDLKUNetS_dynloss_1epoch_4iters``, ...
"""
from __future__ import annotations

from typing import Optional

import torch
from torch.optim.lr_scheduler import _LRScheduler

from .base import nnUNetTrainerExt


class _PaperDepth(nnUNetTrainerExt):
    """The plans' first ``depth`` stages (the paper's S 3, M 4, L 5); plans with fewer are refused."""

    depth: int = 5

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.max_stages = cls.min_stages = cls.depth

    @classmethod
    def too_few_stages_message(cls, configuration: str, n: int) -> str:
        return (f"{cls.__name__}: the paper's network has {cls.depth} encoder stages, the plans' {configuration} "
                f"configuration has {n}: use plans with at least {cls.depth} stages (a larger patch) or "
                f"nnUNetTrainerDLKUNet{'SML'[cls.depth - 3]}_nnUNetWidth (every stage of the plans)")


class nnUNetTrainerDLKUNetS(_PaperDepth):
    """DLKUNet-S (Table 1): the plans' first 3 stages, 96-192-384 channels."""
    arch, depth = "dlkunet_s", 3


class nnUNetTrainerDLKUNetM(_PaperDepth):
    """DLKUNet-M (Table 1): the plans' first 4 stages, 96-...-768 channels."""
    arch, depth = "dlkunet_m", 4


class nnUNetTrainerDLKUNetL(_PaperDepth):
    """DLKUNet-L (Table 1): the plans' first 5 stages, 96-...-1536 channels."""
    arch, depth = "dlkunet_l", 5


class nnUNetTrainerDLKUNetL5DW(nnUNetTrainerDLKUNetL):
    """DLKUNet-5DW (Table 5): DLKUNet-L with 5x5 depthwise kernels in the convolution part."""
    arch = "dlkunet_l_5dw"


class nnUNetTrainerDLKUNetL7DW(nnUNetTrainerDLKUNetL):
    """DLKUNet-7DW (Table 5): DLKUNet-L with 7x7 depthwise kernels in the convolution part."""
    arch = "dlkunet_l_7dw"


class nnUNetTrainerDLKUNetLLKA1(nnUNetTrainerDLKUNetL):
    """DLKUNet-LKA1 (Table 5): DLKUNet-L with attention kernels 3x3 (depthwise) and 7x7 (dilated)."""
    arch = "dlkunet_l_lka1"


class nnUNetTrainerDLKUNetLLKA2(nnUNetTrainerDLKUNetL):
    """DLKUNet-LKA2 (Table 5): DLKUNet-L with attention kernels 5x5 (depthwise) and 5x5 (dilated)."""
    arch = "dlkunet_l_lka2"


# ---------------------------------------------------------------------------- Sec. 4.3's recipe
def paper_lr(epoch: int, initial_lr: float = 1e-3, step: int = 20, factor: float = 0.1, late_epoch: int = 200,
             late_lr: float = 1e-5) -> float:
    """Sec. 4.3: ``initial_lr * factor ** (epoch // step)`` before ``late_epoch`` (0-based epochs), ``late_lr``
    from it on."""
    if epoch >= late_epoch:
        return late_lr
    return initial_lr * factor ** (epoch // step)


class PaperStepLR(_LRScheduler):
    """:func:`paper_lr` as nnU-Net drives its schedulers: ``step(current_epoch)`` at every epoch start."""

    def __init__(self, optimizer, initial_lr: float, current_step: Optional[int] = None):
        self.initial_lr = initial_lr
        self.ctr = 0
        super().__init__(optimizer, current_step if current_step is not None else -1)

    def step(self, current_step: Optional[int] = None):
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        lr = paper_lr(int(current_step), self.initial_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._last_lr = [lr for _ in self.optimizer.param_groups]


class _PaperRecipe(nnUNetTrainerExt):
    """Sec. 4.3: Adam (L2 weight decay 1e-5), LR 1e-3 x0.1 every 20 epochs, 1e-5 from epoch 200; 400 epochs."""

    hparams = {"initial_lr": 1e-3, "weight_decay": 1e-5, "num_epochs": 400}

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, PaperStepLR(optimizer, self.initial_lr)


class nnUNetTrainerDLKUNetSPaper(_PaperRecipe, nnUNetTrainerDLKUNetS):
    """DLKUNet-S with Sec. 4.3's optimizer and learning-rate schedule."""


class nnUNetTrainerDLKUNetMPaper(_PaperRecipe, nnUNetTrainerDLKUNetM):
    """DLKUNet-M with Sec. 4.3's optimizer and learning-rate schedule."""


class nnUNetTrainerDLKUNetLPaper(_PaperRecipe, nnUNetTrainerDLKUNetL):
    """DLKUNet-L with Sec. 4.3's optimizer and learning-rate schedule."""


# ---------------------------------------------------------------------------- nnunet-ext's width rule
class nnUNetTrainerDLKUNetS_nnUNetWidth(nnUNetTrainerExt):
    """DLKUNet-S blocks at every stage of the plans, a quarter of the plans' widths (not the paper's rule)."""
    arch = "dlkunet_s_nnunetwidth"


class nnUNetTrainerDLKUNetM_nnUNetWidth(nnUNetTrainerExt):
    """DLKUNet-M blocks at every stage of the plans, half the plans' widths (not the paper's rule)."""
    arch = "dlkunet_m_nnunetwidth"


class nnUNetTrainerDLKUNetL_nnUNetWidth(nnUNetTrainerExt):
    """DLKUNet-L blocks at every stage of the plans, the plans' widths (not the paper's rule)."""
    arch = "dlkunet_l_nnunetwidth"
