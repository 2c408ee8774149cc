"""DMC-Net: Dynamic Multi-scale and Multi-resolution Convolution network (Yang, Marcus, Sotiras, "DMC-Net:
Lightweight Dynamic Multi-Scale and Multi-Resolution Convolution Network for Pancreas Segmentation in CT Images",
Biomedical Signal Processing and Control 109, 107896, 2025), its ablations DMSC-Net, DMRC-Net and the paper's
U-Net baseline, as nnU-Net architectures.

One class per module, each serving 2D and 3D through ``conv_op`` (dynamic_network_architectures habits):

:class:`DMRC`   Dynamic Multi-Resolution Convolution (Sec. 2.2).
:class:`DMSC`   Dynamic Multi-Scale Convolution (Sec. 2.3) with the lightweight depth-wise design (Sec. 2.4).
:class:`DMCBlock`  the basic block of a U-Net stage: DMSC -> DMRC (DMC-Net, Sec. 2.1); DMSC -> conv and
                DMRC -> conv (DMSC-Net / DMRC-Net: the module replaces the first of two convolutions, Sec. 3.4);
                conv -> conv (the U-Net baseline, Sec. 3.4).
:class:`DMCNet` the U-Net: (optional 1x1 projection of the input,) per stage max pooling then a block; decoder of
                3x3 transposed convolutions, concatenated skip, a block, a 1x1 segmentation head per stage
                (deep supervision in nnU-Net's convention, all heads always built).

Registered variants (``nnunet_ext.architectures.create(name)`` gives the paper configuration; the trainers use
``create_from_plans``): ``dmcnet_2d``/``_3d`` (Sec. 2.1: DMSC 5x5 conv in 2D, 5x5x5 DWConv in 3D; DMRC 4x4 /
1x4x4), ``dmc_dmscnet_{5x5,5x5dw,7x7,7x7dw}_{2d,3d}`` (DMSC-Net, Table 4), ``dmc_dmrcnet_{2d,3d}`` (DMRC-Net,
4x4 / 1x4x4 average pooling), ``dmc_dmrcnet_pool2_{2d,3d}`` (Table 4's 2x2 row), ``dmc_unet_{2d,3d}`` (the
paper's U-Net baseline). See ``docs/dmc_net.md``.

Paper configuration (what reproduces Table 4's parameter counts, all 12 rows within 0.01%): one input channel,
two classes (TCIA-Pancreas), BatchNorm and LeakyReLU(0.2) (the authors' public code, activation before the
norm), bias in every convolution except DMSC's two 1x1 convolutions, no 1x1 input projection in the ablation
networks (the first block reads the image directly); DMC-Net has the 1x1 projection to 32 channels of Fig. 1/2.

nnU-Net-adaptive construction (from plans): number of stages, features per stage, per-axis strides (max pooling
with kernel = stride; none along an axis whose stride is 1), conv/norm/dropout/nonlin ops of the plans
(``batch_norm=True`` switches to the paper's BatchNorm). Kernel sizes are the paper's (3 and k on every axis) unless
``use_plans_kernel_sizes=True``: then stage s takes the plans' ``kernel_sizes[s]`` for its "3x3" convolutions and
its transposed convolution, and DMSC's k on the axes where that kernel is > 1 (1 x k x k in a 1 x 3 x 3 stage).
DMRC pooling rule (see :class:`DMRC`): an int pool size P means P x P in 2D and 1 x P x P in 3D (the paper's
choice; nnU-Net puts the out-of-plane axis first); per axis the pool actually used is ``min(P_a, n_a)`` for a
feature map of size ``n_a``, in ceil mode (every voxel reaches F2; the last cell averages the remainder), and F2 is
brought back to the exact input size by repeating each cell.
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
from typing import Dict, List, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.helper import (convert_conv_op_to_dim, get_matching_batchnorm,
                                                                  get_matching_convtransp,
                                                                  maybe_convert_scalar_to_list)
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd

from . import _fast
from ._common import as_tuple as _as_tuple, prod as _prod
from ._registry import register
from ._scaffold import ScaffoldUNet, UNetDecoder, UNetEncoder, max_pool

__all__ = ["DMRC", "DMSC", "DMCBlock", "DMCNet", "BLOCKS", "TABLE4",
           "count_flops", "flops_table", "main"]

BLOCKS = ("dmc", "dmsc", "dmrc", "conv")
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _unit(conv_op, cin, cout, kernel_size, conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs,
          nonlin, nonlin_kwargs, nonlin_first, groups=1) -> ConvDropoutNormReLU:
    """conv -> (dropout) -> norm -> nonlin (order of the last two swapped with ``nonlin_first``), stride 1, same
    padding: dynamic_network_architectures' ConvDropoutNormReLU; ``groups`` reaches the conv for depth-wise units.
    ``kernel_size``: an int (every axis) or one odd size per axis."""
    dim = convert_conv_op_to_dim(conv_op)
    op = conv_op if groups == 1 else functools.partial(_fast.depthwise_conv_op(conv_op), groups=groups)
    return ConvDropoutNormReLU(op, cin, cout, list(_as_tuple(kernel_size, dim)), [1] * dim, conv_bias, norm_op,
                               norm_op_kwargs,
                               dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs, nonlin_first)


def _scaled_kernel(k: int, conv_kernel: Sequence[int]) -> Tuple[int, ...]:
    """DMSC's k x k kernel on the axes where the block's "3x3" kernel convolves (> 1), 1 where it does not (the
    plans' 1 x 3 x 3 stages of anisotropic CT)."""
    return tuple(int(k) if c > 1 else 1 for c in conv_kernel)


def _check_spatial(x: torch.Tensor, dim: int, where: str) -> None:
    if x.ndim != dim + 2:
        raise ValueError(f"{where}: expected a {dim + 2}-D input (batch, channels, {dim} spatial axes), "
                         f"got shape {tuple(x.shape)}")


# ---------------------------------------------------------------------------------------------------------- DMRC
class DMRC(nn.Module):
    """Dynamic Multi-Resolution Convolution (Sec. 2.2, Fig. 1/2), a drop-in replacement of one 3x3 convolution.

    For X in R^{C x H x W} (C x D x H x W in 3D):

    - F1 = conv(X)                          3x3 conv with norm and nonlinearity (``conv_f1``);
    - F2 = up(conv(AvgPool(X)))             P x P average pooling, stride P (1 x P x P in 3D), 3x3 conv
                                            (``conv_f2``), upsampling that gives every voxel the value of the
                                            pooling cell it was averaged into (nearest neighbour, x P);
    - F3 = conv^(1)(X)                      1x1 conv (``conv_f3``);
    - Fs = F2 (+) F3;  F = F1 (x) Sig(Fs)   spatial dynamic mechanism;
    - F' = conv^(3)(F)                      3x3 conv with norm and nonlinearity (``conv_f_prime``);
    - G = Sig(Conv^(1)(GAvgPool(F')))       channel dynamic mechanism, the paper's "Linear layer" as a 1x1 conv
                                            with bias (``conv_g``);
    - F* = F' (x) G.

    ``pool_size``: the paper's 4 (Table 4's ablation: 2). An int P means (P, P) in 2D and (1, P, P) in 3D (Sec. 2.2,
    "3D implementation details"); a sequence gives the pool per axis. **Pooling rule**: for a feature map of size
    n_a along axis a, the pool used is p_a = min(P_a, n_a) (kernel = stride = p_a, never more than the map) in
    **ceil mode**: the pooled map has ceil(n_a / p_a) cells and, where p_a does not divide n_a, the last cell
    averages the remaining n_a mod p_a voxels (only voxels inside the map; no zero padding enters the mean). So
    every voxel reaches F2 (floor mode, the authors' code, drops the last n_a mod p_a rows: on a 7 x 7 map with a
    4 x 4 pool only the top-left 4 x 4 would). Where p_a divides n_a it is the paper's pooling exactly. F2 is
    upsampled by repeating each cell p_a times and cropping to n_a, so each voxel gets the F2 of its own cell
    and F2 has exactly the input size. Parameter-free: Table 4's counts are unaffected.

    ``conv_kernel``: the kernel of the "3x3" convolutions (F1, F2, F'), per axis; default 3 on every axis (the
    paper); nnU-Net's plans' kernel of the stage (e.g. 1 x 3 x 3) with ``DMCNet(use_plans_kernel_sizes=True)``.
    """

    def __init__(self, conv_op: Type[_ConvNd], input_channels: int, output_channels: int,
                 pool_size: Union[int, Sequence[int]] = 4, conv_bias: bool = True,
                 norm_op: Optional[Type[nn.Module]] = None, norm_op_kwargs: Optional[dict] = None,
                 dropout_op: Optional[Type[_DropoutNd]] = None, dropout_op_kwargs: Optional[dict] = None,
                 nonlin: Optional[Type[nn.Module]] = None, nonlin_kwargs: Optional[dict] = None,
                 nonlin_first: bool = False, conv_kernel: Union[int, Sequence[int]] = 3):
        super().__init__()
        self.dim = convert_conv_op_to_dim(conv_op)
        self.pool_size = self.pool_tuple(pool_size, self.dim)
        ck = _as_tuple(conv_kernel, self.dim)
        self.output_channels = output_channels
        common = (conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs,
                  nonlin_first)
        self.conv_f1 = _unit(conv_op, input_channels, output_channels, ck, *common)
        self.conv_f2 = conv_op(input_channels, output_channels, ck, padding=tuple(k // 2 for k in ck), bias=True)
        self.conv_f3 = conv_op(input_channels, output_channels, 1, bias=True)
        self.conv_f_prime = _unit(conv_op, output_channels, output_channels, ck, *common)
        self.conv_g = conv_op(output_channels, output_channels, 1, bias=True)

    @staticmethod
    def pool_tuple(pool_size: Union[int, Sequence[int]], dim: int) -> Tuple[int, ...]:
        """The paper's pooling per axis: P -> (P, P) in 2D, (1, P, P) in 3D; a sequence is taken as is."""
        if isinstance(pool_size, (int, np.integer)):
            p = (1,) * (dim - 2) + (int(pool_size),) * min(dim, 2)
        else:
            p = tuple(int(v) for v in pool_size)
        if len(p) != dim:
            raise ValueError(f"DMRC pool_size {pool_size!r}: needs {dim} entries for {dim}D, got {len(p)}")
        for a, v in enumerate(p):
            if v < 1:
                raise ValueError(f"DMRC pool_size axis {a}: size {v} must be >= 1")
        return p

    def effective_pool(self, spatial: Sequence[int]) -> Tuple[int, ...]:
        """The pool used for a map of size ``spatial``: per axis min(P_a, n_a) (never exceeds the map)."""
        return tuple(max(1, min(p, int(n))) for p, n in zip(self.pool_size, spatial))

    def pooled_size(self, spatial: Sequence[int]) -> Tuple[int, ...]:
        """Size of the pooled map (ceil mode): ceil(n_a / p_a) per axis."""
        return tuple(-(-int(n) // p) for n, p in zip(spatial, self.effective_pool(spatial)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_spatial(x, self.dim, "DMRC")
        spatial = tuple(x.shape[2:])
        pool = self.effective_pool(spatial)
        pooled = _AVG_POOL[self.dim](x, pool, pool, ceil_mode=True) if any(p > 1 for p in pool) else x
        f2 = self.conv_f2(pooled)
        if any(p > 1 for p in pool):   # each voxel takes its cell's value: x p_a, then crop the ceil-mode overhang
            for axis, p in enumerate(pool):
                if p > 1:
                    f2 = f2.repeat_interleave(p, dim=2 + axis)
            f2 = f2[(Ellipsis, *(slice(0, n) for n in spatial))]                        # F2 = up(conv(AvgPool(X)))
        fs = f2 + self.conv_f3(x)                                                       # Fs = F2 (+) F3
        f = self.conv_f1(x) * torch.sigmoid(fs)                                         # F = F1 (x) Sig(Fs)
        f_prime = self.conv_f_prime(f)                                                  # F' = conv(F)
        g = torch.sigmoid(self.conv_g(f_prime.mean(dim=tuple(range(2, x.ndim)), keepdim=True)))
        return f_prime * g                                                              # F* = F' (x) G

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        pooled = self.pooled_size(input_size)
        c, n = self.output_channels, _prod(input_size)
        return 3 * c * n + c * _prod(pooled) + c   # F1, F3, F' at full size; F2 pooled; G is C x 1 x 1


# ---------------------------------------------------------------------------------------------------------- DMSC
class DMSC(nn.Module):
    """Dynamic Multi-Scale Convolution (Sec. 2.3-2.4, Fig. 1/2), a drop-in replacement of one convolution.

    - F1 = conv^(3)(X),  F1' = conv^(3)(F1)                          Eq. 1, 3 (``path_3``);
    - F2 = conv^(k)(X),  F2' = conv^(k)(F2)                          Eq. 2, 4 (``path_k``), k = 5 in the paper
      (Table 4 also 7); lightweight design (``depthwise=True``, Sec. 2.4): a 1x1 projection to C channels, then
      F2 = DWConv^(k)(.), F2' = DWConv^(k)(F2) (the authors' code projects with a 1x1 conv first so that the
      depth-wise convolution can read any number of input channels);
    - F = [F1'; F2'] in R^{2C x H x W};  G = Sig(Conv^(1)(GAvgPool(F)))  (``conv_g``, no bias);
    - F' = F (x) G;  F* = Conv^(1)(F') in R^{C x H x W}                 (``conv_out``, no bias).

    Every k x k / 3x3 convolution is followed by the norm and the nonlinearity. ``kernel_size`` must be odd.
    ``conv_kernel``: the "3x3" kernel per axis (default 3 everywhere, the paper); the k x k path uses k on the axes
    where it is > 1 and 1 elsewhere (nnU-Net plans' 1 x 3 x 3 stages give 1 x k x k).
    """

    def __init__(self, conv_op: Type[_ConvNd], input_channels: int, output_channels: int, kernel_size: int = 5,
                 depthwise: bool = False, conv_bias: bool = True,
                 norm_op: Optional[Type[nn.Module]] = None, norm_op_kwargs: Optional[dict] = None,
                 dropout_op: Optional[Type[_DropoutNd]] = None, dropout_op_kwargs: Optional[dict] = None,
                 nonlin: Optional[Type[nn.Module]] = None, nonlin_kwargs: Optional[dict] = None,
                 nonlin_first: bool = False, conv_kernel: Union[int, Sequence[int]] = 3):
        super().__init__()
        if int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"DMSC kernel_size k={kernel_size!r} must be an odd positive int (same padding)")
        self.dim = convert_conv_op_to_dim(conv_op)
        self.kernel_size, self.depthwise, self.output_channels = int(kernel_size), bool(depthwise), output_channels
        c3 = _as_tuple(conv_kernel, self.dim)
        c, k = output_channels, _scaled_kernel(int(kernel_size), c3)
        common = (conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs,
                  nonlin_first)
        self.path_3 = nn.Sequential(_unit(conv_op, input_channels, c, c3, *common), _unit(conv_op, c, c, c3, *common))
        if depthwise:
            self.path_k = nn.Sequential(conv_op(input_channels, c, 1, bias=True),
                                        _unit(conv_op, c, c, k, *common, groups=c),
                                        _unit(conv_op, c, c, k, *common, groups=c))
        else:
            self.path_k = nn.Sequential(_unit(conv_op, input_channels, c, k, *common), _unit(conv_op, c, c, k, *common))
        self.conv_g = conv_op(2 * c, 2 * c, 1, bias=False)
        self.conv_out = conv_op(2 * c, c, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_spatial(x, self.dim, "DMSC")
        f = torch.cat([self.path_3(x), self.path_k(x)], dim=1)                          # F = [F1'; F2']
        g = torch.sigmoid(self.conv_g(f.mean(dim=tuple(range(2, x.ndim)), keepdim=True)))  # G
        return self.conv_out(f * g)                                                     # F* = Conv(F (x) G)

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        c, n = self.output_channels, _prod(input_size)
        convs = 4 + (1 if self.depthwise else 0)        # two per path (+ the projection of the lightweight design)
        return convs * c * n + 2 * c + c * n             # + G (2C x 1 x 1) + the 1x1 reduction


# ---------------------------------------------------------------------------------------------------------- block
class DMCBlock(nn.Module):
    """The block of one U-Net stage (Sec. 2.1 and 3.4); ``block`` selects the network:

    ``"dmc"``   DMSC(in, C) -> DMRC(C, C)                (DMC-Net, "DMRC was placed after DMSC")
    ``"dmsc"``  DMSC(in, C) -> 3x3 conv                  (DMSC-Net: DMSC replaces the first conv)
    ``"dmrc"``  DMRC(in, C) -> 3x3 conv                  (DMRC-Net: DMRC replaces the first conv)
    ``"conv"``  3x3 conv -> 3x3 conv                     (the paper's U-Net baseline)

    ``conv_kernel`` is the "3x3" kernel per axis (default 3 on every axis; the plans' kernel of the stage with
    ``DMCNet(use_plans_kernel_sizes=True)``), passed on to DMSC and DMRC.
    """

    def __init__(self, block: str, conv_op, input_channels: int, output_channels: int, dmsc_kernel_size: int = 5,
                 dmsc_depthwise: bool = False, dmrc_pool_size: Union[int, Sequence[int]] = 4, conv_bias: bool = True,
                 norm_op=None, norm_op_kwargs=None, dropout_op=None, dropout_op_kwargs=None, nonlin=None,
                 nonlin_kwargs=None, nonlin_first: bool = False, conv_kernel: Union[int, Sequence[int]] = 3):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block {block!r} is not one of {BLOCKS}")
        self.block = block
        ck = conv_kernel
        ops = dict(conv_bias=conv_bias, norm_op=norm_op, norm_op_kwargs=norm_op_kwargs, dropout_op=dropout_op,
                   dropout_op_kwargs=dropout_op_kwargs, nonlin=nonlin, nonlin_kwargs=nonlin_kwargs,
                   nonlin_first=nonlin_first)
        unit_args = tuple(ops.values())
        c = output_channels
        if block == "dmc":
            first = DMSC(conv_op, input_channels, c, dmsc_kernel_size, dmsc_depthwise, **ops, conv_kernel=ck)
            second = DMRC(conv_op, c, c, dmrc_pool_size, **ops, conv_kernel=ck)
        elif block == "dmsc":
            first = DMSC(conv_op, input_channels, c, dmsc_kernel_size, dmsc_depthwise, **ops, conv_kernel=ck)
            second = _unit(conv_op, c, c, ck, *unit_args)
        elif block == "dmrc":
            first = DMRC(conv_op, input_channels, c, dmrc_pool_size, **ops, conv_kernel=ck)
            second = _unit(conv_op, c, c, ck, *unit_args)
        else:
            first = _unit(conv_op, input_channels, c, ck, *unit_args)
            second = _unit(conv_op, c, c, ck, *unit_args)
        self.units = nn.Sequential(first, second)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.units(x)

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        return sum(int(u.compute_conv_feature_map_size(input_size)) for u in self.units)


# ---------------------------------------------------------------------------------------------------------- U-Net
class DMCNet(ScaffoldUNet):
    """DMC-Net (Sec. 2.1) and its ablations (Sec. 3.4) as one U-Net class for 2D and 3D.

    :param input_channels: image channels (the paper: 1, CT).
    :param n_stages: resolution stages (the paper: 6 in 2D, 5 in 3D).
    :param features_per_stage: channels per stage (2D: 32, 64, 128, 256, 512, 512; 3D: 32 ... 512).
    :param conv_op: ``nn.Conv2d`` or ``nn.Conv3d``.
    :param strides: per stage and axis, the max-pooling kernel = stride in front of the stage's block (the paper:
        1 for the first stage, then 2x2 (2x2x2)); the decoder's transposed convolutions use the same strides.
    :param num_classes: segmentation heads' channels (the paper's TCIA-Pancreas: 2).
    :param block: ``"dmc"`` (DMC-Net), ``"dmsc"`` (DMSC-Net), ``"dmrc"`` (DMRC-Net), ``"conv"`` (U-Net).
    :param dmsc_kernel_size: DMSC's k (5; Table 4: 7).
    :param dmsc_depthwise: DMSC's lightweight design; ``None`` = the paper's choice per dimension: standard
        convolutions in 2D, depth-wise in 3D (Sec. 3.5).
    :param dmrc_pool_size: DMRC's average pooling (4; Table 4: 2), see :class:`DMRC` for the rule.
    :param kernel_sizes: nnU-Net plans' per-stage kernel sizes; used only with ``use_plans_kernel_sizes``.
    :param use_plans_kernel_sizes: ``False`` (default, the paper): every "3x3" convolution is 3 on every axis and
        DMSC's k x k is k on every axis. ``True``: stage ``s`` uses ``kernel_sizes[s]`` for its "3x3" convolutions
        (encoder, decoder, transposed convolution), and k on the axes where that kernel is > 1, 1 elsewhere; on
        anisotropic CT plans (1 x 3 x 3 in the first stages) this is the fair comparison with stock nnU-Net.
    :param input_projection: the 1x1 convolution projecting the input to ``features_per_stage[0]`` channels
        (Fig. 1/2; DMC-Net has it, the ablation networks of Table 4 do not).
    :param batch_norm: use ``BatchNorm`` (eps 1e-5, affine) whatever ``norm_op`` says (the paper's norm).
    :param nonlin_first: nonlinearity before the norm (the authors' code); nnU-Net's order by default.
    :param deep_supervision: nnU-Net's deep supervision (``.decoder.deep_supervision``).
    """

    def __init__(self, input_channels: int, n_stages: int, features_per_stage: Union[int, List[int]],
                 conv_op: Type[_ConvNd], strides: Union[int, List[int], List[List[int]]], num_classes: int,
                 block: str = "dmc", dmsc_kernel_size: int = 5, dmsc_depthwise: Optional[bool] = None,
                 dmrc_pool_size: Union[int, Sequence[int]] = 4, input_projection: bool = False,
                 kernel_sizes: Optional[Sequence] = None, use_plans_kernel_sizes: bool = False,
                 conv_bias: bool = True, norm_op: Optional[Type[nn.Module]] = None, norm_op_kwargs: Optional[dict] = None,
                 dropout_op: Optional[Type[_DropoutNd]] = None, dropout_op_kwargs: Optional[dict] = None,
                 nonlin: Optional[Type[nn.Module]] = None, nonlin_kwargs: Optional[dict] = None,
                 deep_supervision: bool = False, batch_norm: bool = False, nonlin_first: bool = False):
        super().__init__()
        self.dim = dim = convert_conv_op_to_dim(conv_op)
        if n_stages < 2:
            raise ValueError(f"DMC-Net needs n_stages >= 2 (an encoder and a decoder), got {n_stages}")
        if isinstance(features_per_stage, int):
            features_per_stage = [features_per_stage] * n_stages
        if isinstance(strides, int):
            strides = [strides] * n_stages
        if len(features_per_stage) != n_stages:
            raise ValueError(f"features_per_stage has {len(features_per_stage)} entries, n_stages is {n_stages}")
        if len(strides) != n_stages:
            raise ValueError(f"strides has {len(strides)} entries, n_stages is {n_stages}")
        strides = [list(maybe_convert_scalar_to_list(conv_op, st)) for st in strides]
        for s, st in enumerate(strides):
            if len(st) != dim:
                raise ValueError(f"DMC-Net stage {s}: stride {st} has {len(st)} axes, the conv op is {dim}D")
            for a, v in enumerate(st):
                if int(v) != v or v < 1:
                    raise ValueError(f"DMC-Net stage {s}, axis {a}: stride {v} must be an int >= 1")
        strides = [[int(v) for v in st] for st in strides]
        conv_kernels = None
        if use_plans_kernel_sizes:
            conv_kernels = self._plans_kernels(kernel_sizes, n_stages, dim)
        if block not in BLOCKS:
            raise ValueError(f"block {block!r} is not one of {BLOCKS}")
        if dmsc_depthwise is None:
            dmsc_depthwise = dim == 3
        if batch_norm:
            norm_op, norm_op_kwargs = get_matching_batchnorm(conv_op), {"eps": 1e-5, "affine": True}
        DMRC.pool_tuple(dmrc_pool_size, dim)  # validates
        self.strides, self.features_per_stage, self.num_classes = strides, list(features_per_stage), num_classes
        block_kwargs = dict(block=block, dmsc_kernel_size=dmsc_kernel_size, dmsc_depthwise=dmsc_depthwise,
                            dmrc_pool_size=dmrc_pool_size, conv_bias=conv_bias, norm_op=norm_op,
                            norm_op_kwargs=norm_op_kwargs, dropout_op=dropout_op, dropout_op_kwargs=dropout_op_kwargs,
                            nonlin=nonlin, nonlin_kwargs=nonlin_kwargs, nonlin_first=nonlin_first)
        feats, ck = self.features_per_stage, conv_kernels or [(3,) * dim] * n_stages
        # encoder: (1x1 input projection,) per stage max pooling (kernel = stride) then a block; stages[s] is the
        # nn.Sequential (pool or identity, block)
        self.encoder = UNetEncoder(
            input_channels, feats, strides, conv_op=conv_op, kernel_sizes=ck, layout="sequential",
            input_projection=conv_op(input_channels, feats[0], 1, bias=True) if input_projection else None,
            make_down=lambda s, cin, st: max_pool(conv_op, st),
            make_block=lambda s, cin, c: DMCBlock(conv_op=conv_op, input_channels=cin, output_channels=c,
                                                  conv_kernel=ck[s], **block_kwargs))
        # decoder step to stage s: 3x3 transposed conv with the stride of stage s+1 (padding k // 2, output padding
        # stride - 1: exactly stride x the size; with plans' kernels the kernel of stage s), [up, skip], a block
        # 2C -> C, a 1x1 head
        transp_op = get_matching_convtransp(conv_op)
        self.decoder = UNetDecoder(
            self.encoder, num_classes, deep_supervision, fuse="cat",
            make_up=lambda s: transp_op(feats[s + 1], feats[s], ck[s], stride=strides[s + 1],
                                        padding=[k // 2 for k in ck[s]],
                                        output_padding=[v - 1 for v in strides[s + 1]], bias=True),
            make_stage=lambda s: DMCBlock(conv_op=conv_op, input_channels=2 * feats[s], output_channels=feats[s],
                                          conv_kernel=ck[s], **block_kwargs),
            make_head=lambda s: conv_op(feats[s], num_classes, 1, bias=True))
        _fast.fold_units(self)  # an eval-mode BatchNorm folded into its convolution (same state_dict)
        _fast.fast_convs(self)  # 3D convolutions off PyTorch's native CPU kernel (same state_dict)

    @staticmethod
    def _plans_kernels(kernel_sizes, n_stages: int, dim: int) -> List[Tuple[int, ...]]:
        if kernel_sizes is None:
            raise ValueError("DMC-Net: use_plans_kernel_sizes=True needs the plans' kernel_sizes (none were given)")
        if isinstance(kernel_sizes, int):
            kernel_sizes = [kernel_sizes] * n_stages
        if len(kernel_sizes) != n_stages:
            raise ValueError(f"kernel_sizes has {len(kernel_sizes)} entries, n_stages is {n_stages}")
        out = [_as_tuple(k, dim) for k in kernel_sizes]
        for s, k in enumerate(out):
            if len(k) != dim:
                raise ValueError(f"DMC-Net stage {s}: kernel size {list(k)} has {len(k)} axes, the conv op is {dim}D")
            for a, v in enumerate(k):
                if v < 1 or v % 2 == 0:
                    raise ValueError(f"DMC-Net stage {s}, axis {a}: kernel size {v} must be odd and >= 1")
        return out

    def check_input_size(self, spatial: Sequence[int]) -> None:
        """ValueError naming the stage, axis and size for an input the U-Net cannot take: every stride must
        divide the size of the map it pools (the decoder returns to the skip's size exactly)."""
        if len(spatial) != self.dim:
            raise ValueError(f"DMC-Net: input has {len(spatial)} spatial axes, the network is {self.dim}D")
        cur = [int(n) for n in spatial]
        for s, st in enumerate(self.strides):
            for a, (n, v) in enumerate(zip(cur, st)):
                if n < v or n % v:
                    raise ValueError(f"DMC-Net stage {s}, axis {a}: size {n} cannot be pooled with stride {v} "
                                     f"(input size {tuple(spatial)}; every axis must be divisible by the product "
                                     f"of its strides, {math.prod(t[a] for t in self.strides)} along axis {a})")
            cur = [n // v for n, v in zip(cur, st)]

    def forward(self, x: torch.Tensor):
        _check_spatial(x, self.dim, "DMC-Net")
        self.check_input_size(x.shape[2:])
        return self.decoder(self.encoder(x))

    @staticmethod
    def initialize(module):
        InitWeights_He(1e-2)(module)


# ---------------------------------------------------------------------------------------------------------- registry
def _paper_kwargs(dim: int) -> dict:
    """The paper's configuration (Sec. 2.1, 3.2; Table 4 on TCIA-Pancreas: 1 channel, 2 classes); BatchNorm and
    LeakyReLU(0.2) with the activation first follow the authors' public code."""
    n = 6 if dim == 2 else 5
    return dict(input_channels=1, num_classes=2, n_stages=n, features_per_stage=[32, 64, 128, 256, 512, 512][:n],
                conv_op=f"torch.nn.Conv{dim}d", strides=[[1] * dim] + [[2] * dim] * (n - 1), conv_bias=True,
                norm_op=f"torch.nn.BatchNorm{dim}d", norm_op_kwargs={"eps": 1e-5, "affine": True},
                dropout_op=None, dropout_op_kwargs=None, nonlin="torch.nn.LeakyReLU",
                nonlin_kwargs={"negative_slope": 0.2, "inplace": True}, nonlin_first=True, deep_supervision=False)


#: Table 4 of the paper: registered name -> trainable parameters (M) reported
TABLE4: Dict[str, float] = {
    "dmc_unet_2d": 22.80, "dmc_dmrcnet_pool2_2d": 43.77, "dmc_dmrcnet_2d": 43.77, "dmc_dmscnet_5x5_2d": 89.61,
    "dmc_dmscnet_5x5dw_2d": 38.49, "dmc_dmscnet_7x7_2d": 139.89, "dmc_dmscnet_7x7dw_2d": 38.61,
    "dmc_unet_3d": 25.89, "dmc_dmrcnet_pool2_3d": 47.86, "dmc_dmrcnet_3d": 47.86, "dmc_dmscnet_5x5_3d": 138.35,
    "dmc_dmscnet_5x5dw_3d": 41.02, "dmc_dmscnet_7x7_3d": 309.35, "dmc_dmscnet_7x7dw_3d": 41.66,
}
#: Table 4's FLOPs (G) as reported, for the comparison in docs/dmc_net.md
TABLE4_GFLOPS: Dict[str, float] = {
    "dmc_unet_2d": 94.86, "dmc_dmrcnet_pool2_2d": 145.47, "dmc_dmrcnet_2d": 138.86, "dmc_dmscnet_5x5_2d": 343.13,
    "dmc_dmscnet_5x5dw_2d": 147.80, "dmc_dmscnet_7x7_2d": 536.81, "dmc_dmscnet_7x7dw_2d": 150.15,
    "dmc_unet_3d": 1398.81, "dmc_dmrcnet_pool2_3d": 2098.93, "dmc_dmrcnet_3d": 2011.70, "dmc_dmscnet_5x5_3d": 6766.37,
    "dmc_dmscnet_5x5dw_3d": 2140.72, "dmc_dmscnet_7x7_3d": 15061.43, "dmc_dmscnet_7x7dw_3d": 2337.84,
}


def _register_variants() -> None:
    fam = "dmc_net"
    for dim in (2, 3):
        d = f"{dim}d"
        paper = _paper_kwargs(dim)
        register(f"dmcnet_{d}", DMCNet, family=fam, paper_kwargs=paper,
                 variant_kwargs=dict(block="dmc", dmsc_kernel_size=5, dmsc_depthwise=dim == 3, dmrc_pool_size=4,
                                     input_projection=True),
                 description=f"DMC-Net {d} (Yang et al. 2025): DMSC ({'5x5x5 DWConv' if dim == 3 else '5x5 conv'}) "
                             f"then DMRC ({'1x4x4' if dim == 3 else '4x4'} avg pool) per block, 1x1 input projection")
        for k in (5, 7):
            for dw in (False, True):
                kk = "x".join([str(k)] * dim)
                register(f"dmc_dmscnet_{k}x{k}{'dw' if dw else ''}_{d}", DMCNet, family=fam, paper_kwargs=paper,
                         variant_kwargs=dict(block="dmsc", dmsc_kernel_size=k, dmsc_depthwise=dw),
                         description=f"DMSC-Net {d}, {kk} {'DWConv' if dw else 'conv'}: DMSC replaces the first conv "
                                     f"of each block (DMC-Net paper, Table 4)")
        for pool in (4, 2):
            pp = "x".join(["1"] * (dim - 2) + [str(pool)] * 2)
            register(f"dmc_dmrcnet{'_pool2' if pool == 2 else ''}_{d}", DMCNet, family=fam, paper_kwargs=paper,
                     variant_kwargs=dict(block="dmrc", dmrc_pool_size=pool),
                     description=f"DMRC-Net {d}, {pp} avg pool: DMRC replaces the first conv of each block "
                                 f"(DMC-Net paper, Table 4)")
        register(f"dmc_unet_{d}", DMCNet, family=fam, paper_kwargs=paper, variant_kwargs=dict(block="conv"),
                 description=f"the DMC-Net paper's U-Net baseline {d}: two 3x3 convs per block, 3x3 transposed convs")


# ---------------------------------------------------------------------------------------------------------- FLOPs
#: input sizes (spatial) at which flops_table counts: the paper's 2D patch (512 x 512, Sec. 3.2) and a 3D patch
#: of 96 x 192 x 192 voxels (D x H x W)
FLOPS_INPUT = {2: (512, 512), 3: (96, 192, 192)}


def count_flops(name: str, spatial: Optional[Sequence[int]] = None, batch: int = 1) -> int:
    """FLOPs of one forward pass of variant ``name`` (paper configuration, built on the meta device) at ``spatial``
    (default :data:`FLOPS_INPUT`), counted by nnunet-ext's one FLOP counter
    (:func:`nnunet_ext.benchmark.profile.forward_flops`: torch's FlopCounterMode; convolutions, transposed convolutions,
    matmuls; 1 multiply-add = 2 FLOPs; pooling, sigmoid, element-wise ops are not counted)."""
    from nnunet_ext.architectures import forward_flops

    from ._registry import get_spec

    spec = get_spec(name)
    kwargs = spec.default_kwargs()
    spatial = tuple(spatial or FLOPS_INPUT[convert_conv_op_to_dim(kwargs["conv_op"])])
    with torch.device("meta"):
        net = spec.cls(**kwargs).eval()
    return forward_flops(net, (batch, kwargs["input_channels"], *spatial), "meta")


def flops_table(names: Optional[Sequence[str]] = None) -> List[dict]:
    """Rows (name, input, params_M, paper_params_M, GFLOPs, GMACs, paper_GFLOPs) for the paper configurations at
    :data:`FLOPS_INPUT`, batch 1."""
    from ._registry import count_parameters_of, get_spec, list_architectures

    rows = []
    for name in names or list_architectures("dmc*"):
        dim = convert_conv_op_to_dim(get_spec(name).default_kwargs()["conv_op"])
        flops = count_flops(name)
        rows.append(dict(name=name, input=FLOPS_INPUT[dim], params_M=count_parameters_of(name) / 1e6,
                         paper_params_M=TABLE4.get(name), GFLOPs=flops / 1e9, GMACs=flops / 2e9,
                         paper_GFLOPs=TABLE4_GFLOPS.get(name)))
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m nnunet_ext.architectures.dmc_net flops``: parameters and FLOPs of the paper configurations
    (:func:`flops_table`). Step time and peak memory on nnU-Net plans: ``nnunet-ext benchmark`` (docs/benchmarks.md)."""
    ap = argparse.ArgumentParser(prog="python -m nnunet_ext.architectures.dmc_net")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("flops", help="parameters and FLOPs of the paper configurations (meta device)")
    ap.parse_args(argv)
    print("| variant | input | params (M) | paper params (M) | GFLOPs | GMACs | paper FLOPs (G) |")
    print("|---|---|---|---|---|---|---|")
    for r in flops_table():
        pp = "" if r["paper_params_M"] is None else f"{r['paper_params_M']:.2f}"
        pf = "" if r["paper_GFLOPs"] is None else f"{r['paper_GFLOPs']:.2f}"
        print(f"| {r['name']} | {'x'.join(map(str, r['input']))} | {r['params_M']:.2f} | {pp} | "
              f"{r['GFLOPs']:.2f} | {r['GMACs']:.2f} | {pf} |")
    return 0


if __name__ == "__main__":
    # run as a script: the package import has registered the variants already (by the module of that name);
    # use its functions rather than registering this __main__ copy a second time
    from nnunet_ext.architectures.dmc_net import main as _main

    sys.exit(_main())
else:
    _register_variants()
