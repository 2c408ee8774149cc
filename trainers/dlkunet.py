"""Trainers of DLKUNet-S/M/L (seed paper ``dlkunet.txt``, Table 1): nnU-Net's recipe (SGD poly-LR, Dice+CE with deep
supervision, nnU-Net's augmentation and inference) with the network from the registry, adapted to the plans.

The paper's loss schedules (Sec. 4.4) are name suffixes that work on any trainer of ours
(:mod:`nnunet_ext.trainers.loss_schedules`): ``nnUNetTrainerDLKUNetL_phaseloss``, ``nnUNetTrainerDLKUNetM_dynloss``,
``nnUNetTrainerDLKUNetS_phaseloss_1epoch_4iters``, ...
"""
from .base import nnUNetTrainerExt


class nnUNetTrainerDLKUNetS(nnUNetTrainerExt):
    """DLKUNet-S (C = 96, widest stage 384) on nnU-Net's plans."""
    arch = "dlkunet_s"


class nnUNetTrainerDLKUNetM(nnUNetTrainerExt):
    """DLKUNet-M (C = 96, widest stage 768) on nnU-Net's plans."""
    arch = "dlkunet_m"


class nnUNetTrainerDLKUNetL(nnUNetTrainerExt):
    """DLKUNet-L (C = 96, widest stage 1536) on nnU-Net's plans."""
    arch = "dlkunet_l"
