"""Trainers of DLKUNet-S/M/L (seed paper ``dlkunet.txt``, Table 1): nnU-Net's recipe (SGD poly-LR, Dice+CE with deep
supervision, nnU-Net's augmentation and inference) with the network from the registry, adapted to the plans: the
plans' stages and strides, the plans' widths times 1/4 (S), 1/2 (M), 1 (L) -- the ratio of Table 1's widest stages
384 : 768 : 1536 (``architectures/dlkunet.py``, "S/M/L on plans"; ``docs/dlkunet.md``).

The paper's loss schedules (Sec. 4.4) are name suffixes that work on any trainer of ours
(:mod:`nnunet_ext.trainers.loss_schedules`): ``nnUNetTrainerDLKUNetL_phaseloss``, ``nnUNetTrainerDLKUNetM_dynloss``,
``nnUNetTrainerDLKUNetS_phaseloss_1epoch_4iters``, ...
"""
from .base import nnUNetTrainerExt


class nnUNetTrainerDLKUNetS(nnUNetTrainerExt):
    """DLKUNet-S: a quarter of the plans' widths (paper: C = 96, 3 stages, widest 384)."""
    arch = "dlkunet_s"


class nnUNetTrainerDLKUNetM(nnUNetTrainerExt):
    """DLKUNet-M: half the plans' widths (paper: C = 96, 4 stages, widest 768)."""
    arch = "dlkunet_m"


class nnUNetTrainerDLKUNetL(nnUNetTrainerExt):
    """DLKUNet-L: the plans' widths (paper: C = 96, 5 stages, widest 1536)."""
    arch = "dlkunet_l"
