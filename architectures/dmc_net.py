"""DMC-Net: Dynamic Multi-scale and Multi-resolution Convolution network (Yang, Marcus, Sotiras, "DMC-Net:
Lightweight Dynamic Multi-Scale and Multi-Resolution Convolution Network for Pancreas Segmentation in CT Images",
Biomedical Signal Processing and Control 109, 107896, 2025), its ablations DMSC-Net, DMRC-Net and the paper's
U-Net baseline, as nnU-Net architectures.

One class per module, each serving 2D and 3D through ``conv_op`` (dynamic_network_architectures habits):
:class:`DMRC` (Dynamic Multi-Resolution Convolution, Sec. 2.2), :class:`DMSC` (Dynamic Multi-Scale Convolution,
Sec. 2.3, with the lightweight depth-wise design of Sec. 2.4), :class:`DMCBlock` (the block of a U-Net stage:
DMC-Net, DMSC-Net, DMRC-Net or the U-Net baseline, Sec. 2.1 / 3.4) and :class:`DMCNet` (the U-Net, deep
supervision in nnU-Net's convention).

Registered variants (``create(name)``: the paper configuration, the one reproducing Table 4's parameter counts;
the trainers use ``create_from_plans``): ``dmcnet_2d``/``_3d`` (Sec. 2.1),
``dmc_dmscnet_{5x5,5x5dw,7x7,7x7dw}_{2d,3d}`` (DMSC-Net), ``dmc_dmrcnet_{2d,3d}`` and
``dmc_dmrcnet_pool2_{2d,3d}`` (DMRC-Net, 4x4 / 2x2 pooling), ``dmc_unet_{2d,3d}`` (the U-Net baseline), Table 4.
The paper configuration, the nnU-Net-adaptive construction (plans' stages, features, per-axis strides and ops;
``use_plans_kernel_sizes``) and the DMRC pooling rule (ceil mode, :class:`DMRC`) are in ``docs/dmc_net.md``.
"""
from __future__ import annotations

import functools
import math
from typing import Dict, List, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.helper import (convert_conv_op_to_dim, get_matching_batchnorm,
                                                                  get_matching_convtransp)
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd

from . import _fast
from ._common import as_tuple as _as_tuple, check_stage_list, per_stage, prod as _prod
from ._registry import register
from ._scaffold import ScaffoldUNet, UNetDecoder, UNetEncoder, max_pool

__all__ = ["DMRC", "DMSC", "DMCBlock", "DMCNet", "BLOCKS", "TABLE4"]

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
                               norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs, nonlin_first)


def _scaled_kernel(k: int, conv_kernel: Sequence[int]) -> Tuple[int, ...]:
    """DMSC's k x k kernel on the axes where the block's "3x3" kernel convolves (> 1), 1 where it does not."""
    return tuple(int(k) if c > 1 else 1 for c in conv_kernel)


def _check_spatial(x: torch.Tensor, dim: int, where: str) -> None:
    if x.ndim != dim + 2:
        raise ValueError(f"{where}: expected a {dim + 2}-D input (batch, channels, {dim} spatial axes), "
                         f"got shape {tuple(x.shape)}")


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
    "3D implementation details"); a sequence gives the pool per axis. Pooling rule: along an axis of size n_a the
    pool is p_a = min(P_a, n_a) (kernel = stride = p_a) in ceil mode (the last cell averages the remaining
    n_a mod p_a voxels, no padding enters the mean; the paper's pooling wherever p_a divides n_a); F2 is upsampled
    by repeating each cell p_a times and cropping to n_a (``upsample="repeat"``), or by the paper's nearest
    interpolation to n_a (``"nearest"``; the same where p_a divides n_a). Parameter-free. Rationale: docs/dmc_net.md.

    ``conv_kernel``: the kernel of the "3x3" convolutions (F1, F2, F'), per axis; default 3 on every axis (the
    paper); nnU-Net's plans' kernel of the stage (e.g. 1 x 3 x 3) with ``DMCNet(use_plans_kernel_sizes=True)``.
    """

    def __init__(self, conv_op: Type[_ConvNd], input_channels: int, output_channels: int,
                 pool_size: Union[int, Sequence[int]] = 4, conv_bias: bool = True,
                 norm_op: Optional[Type[nn.Module]] = None, norm_op_kwargs: Optional[dict] = None,
                 dropout_op: Optional[Type[_DropoutNd]] = None, dropout_op_kwargs: Optional[dict] = None,
                 nonlin: Optional[Type[nn.Module]] = None, nonlin_kwargs: Optional[dict] = None,
                 nonlin_first: bool = False, conv_kernel: Union[int, Sequence[int]] = 3, upsample: str = "repeat"):
        super().__init__()
        if upsample not in ("repeat", "nearest"):
            raise ValueError(f"DMRC upsample {upsample!r} is not 'repeat' or 'nearest'")
        self.dim, self.upsample = convert_conv_op_to_dim(conv_op), upsample
        self.pool_size = self.pool_tuple(pool_size, self.dim)
        ck, self.output_channels = _as_tuple(conv_kernel, self.dim), output_channels
        ops = (conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs, nonlin_first)
        self.conv_f1 = _unit(conv_op, input_channels, output_channels, ck, *ops)
        self.conv_f2 = conv_op(input_channels, output_channels, ck, padding=tuple(k // 2 for k in ck), bias=True)
        self.conv_f3 = conv_op(input_channels, output_channels, 1, bias=True)
        self.conv_f_prime = _unit(conv_op, output_channels, output_channels, ck, *ops)
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
        if any(p > 1 for p in pool) and self.upsample == "nearest":                      # the paper's up()
            f2 = F.interpolate(f2, size=spatial, mode="nearest")
        elif any(p > 1 for p in pool):   # each voxel takes its cell's value: x p_a, then crop the ceil-mode overhang
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
        self.block, ck = block, conv_kernel
        ops = dict(conv_bias=conv_bias, norm_op=norm_op, norm_op_kwargs=norm_op_kwargs, dropout_op=dropout_op,
                   dropout_op_kwargs=dropout_op_kwargs, nonlin=nonlin, nonlin_kwargs=nonlin_kwargs,
                   nonlin_first=nonlin_first)
        unit_args, c = tuple(ops.values()), output_channels
        dmsc = lambda cin: DMSC(conv_op, cin, c, dmsc_kernel_size, dmsc_depthwise, **ops, conv_kernel=ck)  # noqa: E731
        dmrc = lambda cin: DMRC(conv_op, cin, c, dmrc_pool_size, **ops, conv_kernel=ck)  # noqa: E731
        conv = lambda cin: _unit(conv_op, cin, c, ck, *unit_args)  # noqa: E731
        first, second = {"dmc": (dmsc, dmrc), "dmsc": (dmsc, conv), "dmrc": (dmrc, conv), "conv": (conv, conv)}[block]
        self.units = nn.Sequential(first(input_channels), second(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.units(x)

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        return sum(int(u.compute_conv_feature_map_size(input_size)) for u in self.units)


class DMCNet(ScaffoldUNet):
    """DMC-Net (Sec. 2.1) and its ablations (Sec. 3.4) as one U-Net class for 2D and 3D.

    :param input_channels, n_stages, features_per_stage, conv_op, num_classes: as in nnU-Net's plans (the paper:
        1 CT channel; 6 stages in 2D, 5 in 3D, 32, 64, 128, 256, 512(, 512) channels; 2 classes).
    :param strides: per stage and axis, the max-pooling kernel = stride in front of the stage's block (the paper:
        1, then 2x2 (2x2x2)); the decoder's transposed convolutions use the same strides.
    :param block: ``"dmc"`` (DMC-Net), ``"dmsc"`` (DMSC-Net), ``"dmrc"`` (DMRC-Net), ``"conv"`` (U-Net).
    :param dmsc_kernel_size: DMSC's k (5; Table 4: 7).
    :param dmsc_depthwise: DMSC's lightweight design; ``None`` = the paper's choice per dimension: standard
        convolutions in 2D, depth-wise in 3D (Sec. 3.5).
    :param dmrc_pool_size: DMRC's average pooling (4; Table 4: 2), see :class:`DMRC` for the rule.
    :param kernel_sizes: nnU-Net plans' per-stage kernel sizes; used only with ``use_plans_kernel_sizes``.
    :param use_plans_kernel_sizes: ``False`` (default, the paper): every "3x3" convolution is 3 on every axis and
        DMSC's k x k is k on every axis. ``True``: stage ``s`` uses ``kernel_sizes[s]`` for its "3x3" convolutions
        (encoder, decoder, transposed convolution), and k on the axes where that kernel is > 1, 1 elsewhere.
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
        features_per_stage = per_stage("features_per_stage", features_per_stage, n_stages, owner="DMC-Net")
        strides = [list(st) for st in check_stage_list("strides", strides, n_stages, dim, owner="DMC-Net")]
        conv_kernels = None
        if use_plans_kernel_sizes:
            if kernel_sizes is None:
                raise ValueError("DMC-Net: use_plans_kernel_sizes=True needs the plans' kernel_sizes (none were given)")
            conv_kernels = check_stage_list("kernel_sizes", kernel_sizes, n_stages, dim, owner="DMC-Net", odd=True)
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
        # encoder: (1x1 input projection,) per stage max pooling then a block; stages[s] = Sequential(pool, block)
        self.encoder = UNetEncoder(
            input_channels, feats, strides, conv_op=conv_op, kernel_sizes=ck, layout="sequential",
            input_projection=conv_op(input_channels, feats[0], 1, bias=True) if input_projection else None,
            make_down=lambda s, cin, st: max_pool(conv_op, st),
            make_block=lambda s, cin, c: DMCBlock(conv_op=conv_op, input_channels=cin, output_channels=c,
                                                  conv_kernel=ck[s], **block_kwargs))
        # decoder step to stage s: 3x3 (or stage s's plans kernel) transposed conv with stage s+1's stride (padding
        # k // 2, output padding stride - 1: exactly stride x the size), [up, skip], a block 2C -> C, a 1x1 head
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


_register_variants()
