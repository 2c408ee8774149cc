"""Trainers of the DMC-Net family (Yang, Marcus, Sotiras, BSPC 2025; ``nnunet_ext.architectures.dmc_net``).

Each builds the nnU-Net-adaptive network from the plans (stages, features, strides, norm/nonlin ops of the
plans) with the paper's per-dimension choice of module: ``arch`` is the 3D variant, ``arch_2d`` the 2D one
(they differ in DMSC's design: 5x5 convolutions in 2D, 5x5x5 depth-wise convolutions in 3D, Sec. 3.5).

``nnUNetTrainerDMCNet``, ``nnUNetTrainerDMSCNet``, ``nnUNetTrainerDMRCNet``: nnU-Net's recipe (SGD lr 1e-2,
Nesterov 0.99, poly LR, Dice + CE, deep supervision, 1000 epochs). ``nnUNetTrainerDMCNetPaper``: the paper's
recipe (Sec. 3.2: initial LR 1e-3, Nesterov momentum 0.99, poly, CE + Dice, 1000 epochs) and the paper's
BatchNorm. Short schedules work by name, e.g. ``nnUNetTrainerDMCNet_1epoch_4iters``.

Every block type of Table 4 (the ablation, Sec. 3.4) has a trainer, built at the plans' depth, widths and norm (not
the paper's network: docs/dmc_net.md); the 2D row goes with 2d plans and the 3D row with 3d plans, as the paper pairs
them (a 5 x 5 DMSC in 2D is a 5 x 5 x 5 one in 3D; 4 x 4 DMRC pooling is 1 x 4 x 4):
``nnUNetTrainerDMCUNet`` (the U-Net baseline), ``nnUNetTrainerDMSCNet{5x5,5x5DW,7x7,7x7DW}``,
``nnUNetTrainerDMRCNet`` (4 x 4) and ``nnUNetTrainerDMRCNetPool2`` (2 x 2). ``nnUNetTrainerDMSCNet`` is the
paper's own pairing (5 x 5 conv in 2D, 5 x 5 x 5 DWConv in 3D, Sec. 3.5).

The suffix ``_planskernels`` (on every trainer whose networks are :class:`DMCNet`, e.g.
``nnUNetTrainerDMCNet_planskernels``): the same networks with the plans' kernel sizes
(``use_plans_kernel_sizes=True``: 1 x 3 x 3 in the anisotropic stages of CT plans, DMSC's k on the in-plane axes
only there), for a comparison with stock nnU-Net on equal kernels. ``nnUNetTrainer{DMCNet,DMSCNet,DMRCNet,DMCUNet}
PlansKernels`` are those suffixed trainers under their former names.
"""
from __future__ import annotations

from nnunet_ext.architectures import get_spec
from nnunet_ext.architectures.dmc_net import DMCNet

from ._naming import register_alias, register_suffix
from .base import nnUNetTrainerExt


class _PerDimensionArch(nnUNetTrainerExt):
    """``arch`` for 3D plans, ``arch_2d`` for 2D plans (the paper configures its 2D and 3D networks differently)."""

    arch_2d: str = ""

    @classmethod
    def arch_for(cls, configuration_manager) -> str:
        two_d = len(configuration_manager.patch_size) == 2 and cls.arch_2d
        return cls.arch_2d if two_d else cls.arch


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


# ---------------------------------------------------------------------------- the rest of Table 4 (Sec. 3.4)
class nnUNetTrainerDMCUNet(_PerDimensionArch):
    """The DMC-Net paper's U-Net baseline (two 3x3 / 3x3x3 convs per block, 3x3 transposed convs; Table 4)."""
    arch, arch_2d = "dmc_unet_3d", "dmc_unet_2d"


class nnUNetTrainerDMSCNet5x5(_PerDimensionArch):
    """DMSC-Net, k = 5 standard convolutions (5x5 in 2D, 5x5x5 in 3D; Table 4)."""
    arch, arch_2d = "dmc_dmscnet_5x5_3d", "dmc_dmscnet_5x5_2d"


class nnUNetTrainerDMSCNet5x5DW(_PerDimensionArch):
    """DMSC-Net, k = 5 depth-wise convolutions (Sec. 2.4's lightweight design; Table 4)."""
    arch, arch_2d = "dmc_dmscnet_5x5dw_3d", "dmc_dmscnet_5x5dw_2d"


class nnUNetTrainerDMSCNet7x7(_PerDimensionArch):
    """DMSC-Net, k = 7 standard convolutions (Table 4)."""
    arch, arch_2d = "dmc_dmscnet_7x7_3d", "dmc_dmscnet_7x7_2d"


class nnUNetTrainerDMSCNet7x7DW(_PerDimensionArch):
    """DMSC-Net, k = 7 depth-wise convolutions (Table 4)."""
    arch, arch_2d = "dmc_dmscnet_7x7dw_3d", "dmc_dmscnet_7x7dw_2d"


class nnUNetTrainerDMRCNetPool2(_PerDimensionArch):
    """DMRC-Net with 2x2 (1x2x2) average pooling (Table 4)."""
    arch, arch_2d = "dmc_dmrcnet_pool2_3d", "dmc_dmrcnet_pool2_2d"


# ---------------------------------------------------------------------------- the plans' kernel sizes
def is_dmc_net_trainer(base: type) -> bool:
    """Whether every network ``base`` builds (``arch``, and ``arch_2d`` where set) is a :class:`DMCNet`."""
    archs = [a for a in (getattr(base, "arch", ""), getattr(base, "arch_2d", "")) if a]
    try:
        return bool(archs) and all(issubclass(get_spec(a).cls, DMCNet) for a in archs)
    except KeyError:  # an unregistered arch: no DMC-Net
        return False


def _plans_kernels(m):
    return {}, {"arch_kwargs": {"use_plans_kernel_sizes": True}}, ()


register_suffix("planskernels", r"planskernels", _plans_kernels,
                "DMC-Net family: the plans' kernel sizes (use_plans_kernel_sizes=True)", applies_to=is_dmc_net_trainer)

#: the trainers the suffix replaced, kept by name (their model folders and checkpoints)
for _old in ("DMCNet", "DMSCNet", "DMRCNet", "DMCUNet"):
    register_alias(f"nnUNetTrainer{_old}PlansKernels", f"nnUNetTrainer{_old}_planskernels")
