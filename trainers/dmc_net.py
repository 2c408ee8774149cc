"""Trainers of the DMC-Net family (Yang, Marcus, Sotiras, BSPC 2025; ``nnunet_ext.architectures.dmc_net``).

Each builds the nnU-Net-adaptive network from the plans (stages, features, strides, norm/nonlin ops of the
plans) with the paper's per-dimension choice of module: ``arch`` is the 3D variant, ``arch_2d`` the 2D one
(they differ in DMSC's design: 5x5 convolutions in 2D, 5x5x5 depth-wise convolutions in 3D, Sec. 3.5).

``nnUNetTrainerDMCNet``, ``nnUNetTrainerDMSCNet``, ``nnUNetTrainerDMRCNet``: nnU-Net's recipe (SGD lr 1e-2,
Nesterov 0.99, poly LR, Dice + CE, deep supervision, 1000 epochs). ``nnUNetTrainerDMCNetPaper``: the paper's
recipe (Sec. 3.2: initial LR 1e-3, Nesterov momentum 0.99, poly, CE + Dice, 1000 epochs) and the paper's
BatchNorm. Short schedules work by name, e.g. ``nnUNetTrainerDMCNet_1epoch_4iters``.
"""
from __future__ import annotations

import torch

from nnunet_ext.architectures import create_from_plans

from .base import nnUNetTrainerExt


class _PerDimensionArch(nnUNetTrainerExt):
    """``arch`` for 3D plans, ``arch_2d`` for 2D plans (the paper configures its 2D and 3D networks differently)."""

    arch_2d: str = ""

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True) -> torch.nn.Module:
        two_d = len(configuration_manager.patch_size) == 2 and cls.arch_2d
        return create_from_plans(cls.arch_2d if two_d else cls.arch, configuration_manager, num_input_channels,
                                 num_output_channels, enable_deep_supervision, **cls.arch_kwargs)


class nnUNetTrainerDMCNet(_PerDimensionArch):
    """DMC-Net (DMSC then DMRC in every block), nnU-Net's recipe."""
    arch, arch_2d = "dmcnet_3d", "dmcnet_2d"


class nnUNetTrainerDMSCNet(_PerDimensionArch):
    """DMSC-Net (DMSC replaces the first conv of every block; 5x5 conv in 2D, 5x5x5 DWConv in 3D)."""
    arch, arch_2d = "dmc_dmscnet_5x5dw_3d", "dmc_dmscnet_5x5_2d"


class nnUNetTrainerDMRCNet(_PerDimensionArch):
    """DMRC-Net (DMRC with 4x4 / 1x4x4 average pooling replaces the first conv of every block)."""
    arch, arch_2d = "dmc_dmrcnet_3d", "dmc_dmrcnet_2d"


class nnUNetTrainerDMCNetPaper(nnUNetTrainerDMCNet):
    """DMC-Net with the paper's recipe (Sec. 3.2): initial LR 1e-3, SGD Nesterov 0.99, poly, CE + Dice; BatchNorm."""
    arch_kwargs = {"batch_norm": True}
    hparams = {"initial_lr": 1e-3}
