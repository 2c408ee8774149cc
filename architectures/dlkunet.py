"""DLKUNet: a U-shaped network of depthwise-separable convolutions and large-kernel attention (seed paper
``dlkunet.txt``: Sec. 3 "Method", Table 1 "Configurations of different DLKUNet models", Table 5 "kernel sizes").

Building blocks (one class per block, all dimension-agnostic: the conv op is injected, pooling, transposed
convolution and normalisation are derived from it, so the same code builds the 2D paper networks and 3D networks):

:class:`ConvPart`
    eqs. 1-2: ``Z' = ReLU(BN(PW(DW(Z))))``, ``Z = BN(PW(DW(Z')))`` with 3x3 depthwise (DW) and 1x1 pointwise (PW)
    convolutions, plus a ReLU after the second BN (``relu_after_norm2``, see below). The first pointwise
    convolution changes the width ``C_in -> C_out`` (the first encoder block "expands the input feature channels
    to C", Sec. 3.1).
:class:`LargeKernelAttention`
    eqs. 3-4: ``Z_LK = PW(SpatialConv(DW(Z)))`` with a 5x5 depthwise convolution (padding 2) and a 7x7 depthwise
    convolution of dilation 3 (the spatial conv; Table 5 names "5x5, 7x7"), then ``Z_out = Z (x) Z_LK`` (Hadamard
    product, eq. 4; a residual ``+ Z`` only with ``attention_residual=True``).
:class:`EBlock`
    Sec. 3.2: convolution part followed by attention part.
:class:`DFB`
    Sec. 3.3, Decoder Fusion Block: fusion part (x2 upsampling of the decoder map, zero-padding to the skip's size =
    "auto-resize", channel concatenation ``[skip, up]``), then a convolution part and an attention part as in the
    encoder (``2 C -> C``).
:class:`DLKUNet`
    Sec. 3.1: encoder of EBlocks separated by max-pooling (2x2, stride 2), decoder of DFBs, a 1x1 reprojection layer
    to the classes.

Where the paper is ambiguous the reading that reproduces Table 1's parameter counts is taken (the choices and
their evidence: ``docs/dlkunet.md``): the DFB's transposed convolution has kernel = stride = the pooling stride; eq. 3's
PointwiseConv and eq. 4's ChannelConv_1x1 are one 1x1 convolution (``separate_channel_conv`` for two); a ReLU after
the second BN (``relu_after_norm2``, Sec. 3.2's text; ``False`` = eq. 2); no residual around the Hadamard product
(``attention_residual``, eq. 4).

Registered variants (``create(name)`` = Table 1's configuration: 224x224, 1 channel, 9 classes):

``dlkunet_s`` / ``dlkunet_m`` / ``dlkunet_l``
    the paper's rule (Sec. 3.4, Table 1): 3 / 4 / 5 encoder stages, C = 96 doubling per stage. On nnU-Net plans
    (``create_from_plans``) the plans' first 3 / 4 / 5 stages (their strides, depthwise kernels, conv op and norm);
    plans with fewer stages are a ``ValueError``.
``dlkunet_l_5dw`` / ``dlkunet_l_7dw`` / ``dlkunet_l_lka1`` / ``dlkunet_l_lka2``
    Table 5: DLKUNet-L with 5x5 / 7x7 depthwise kernels in the convolution part, or the attention's kernels
    (depthwise, dilated) = (3x3, 7x7) / (5x5, 5x5) instead of (5x5, 7x7).
``dlkunet_s_nnunetwidth`` / ``..._m_...`` / ``..._l_...``
    nnunet-ext's adaptation (not the paper's rule): every stage of the plans, the plans' widths x 1/4, 1/2, 1 (the
    ratio of Table 1's widest stages 384 : 768 : 1536).

On plans the large-kernel attention keeps its kernels on axes where the plans' kernel is > 1 and uses 1 where it
is 1 (anisotropic stages), so 3D kernels are 5x5x5 and 7x7x7 (dilation 3).
"""
from __future__ import annotations

from typing import Optional, Sequence, Type, Union

import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.helper import (convert_conv_op_to_dim, get_matching_batchnorm,
                                                                   get_matching_convtransp)
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn
from torch.nn.modules.conv import _ConvNd

from . import _fast
from ._common import as_tuple as _tuple, check_stage_list, per_stage, prod as _prod
from ._registry import register
from ._scaffold import ScaffoldUNet, UNetDecoder, UNetEncoder, max_pool

__all__ = ["ConvPart", "LargeKernelAttention", "EBlock", "DFB", "DLKUNet"]

IntOrSeq = Union[int, Sequence[int]]


class ConvPart(nn.Module):
    """Convolution part of EBlock / DFB (eqs. 1-2)::

        Z'_{l-1} = sigma_1(BN(PointwiseConv(DepthwiseConv(Z_{l-1}))))      (1)
        Z_l      = BN(PointwiseConv(DepthwiseConv(Z'_{l-1})))               (2)

    ``kernel_size`` is the depthwise kernel (3x3 in the paper; the plans' kernel size on nnU-Net plans).
    ``relu_after_norm2`` (default ``True``) applies ``sigma_1`` (ReLU) after the second BN as well: eq. 2 has no
    ReLU there, but Sec. 3.2's text ("... ReLU activation for the next subsequent iteration") and the authors'
    public code (``bn2`` then ``relu``) do; ``False`` is eq. 2 literally. Parameter-free either way.
    """

    def __init__(self, conv_op: Type[_ConvNd], in_channels: int, out_channels: int, kernel_size: IntOrSeq,
                 conv_bias: bool, norm_op: Type[nn.Module], norm_op_kwargs: dict, relu_after_norm2: bool = True):
        super().__init__()
        dim = convert_conv_op_to_dim(conv_op)
        k = _tuple(kernel_size, dim)
        pad = tuple(i // 2 for i in k)
        dw_op = _fast.depthwise_conv_op(conv_op)  # channels-last where it pays (same parameters)
        self.dw1 = dw_op(in_channels, in_channels, k, padding=pad, groups=in_channels, bias=conv_bias)
        self.pw1 = conv_op(in_channels, out_channels, 1, bias=conv_bias)
        self.norm1 = norm_op(out_channels, **norm_op_kwargs)
        self.sigma1 = nn.ReLU()  # run in place unless a hook watches (see forward)
        self.dw2 = dw_op(out_channels, out_channels, k, padding=pad, groups=out_channels, bias=conv_bias)
        self.pw2 = conv_op(out_channels, out_channels, 1, bias=conv_bias)
        self.norm2 = norm_op(out_channels, **norm_op_kwargs)
        self.relu_after_norm2 = bool(relu_after_norm2)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # ReLUs in place on the fresh norm outputs, unless a hook watches the modules whose output they would
        # overwrite (a forward hook would see it mutated, a full backward hook makes it a view that must not be)
        z = _fast.conv_norm(self.pw1, self.norm1, self.dw1(z))  # eq. 1 (BN folded in eval mode)
        z = self.sigma1(z) if _fast.hooked(self.pw1, self.norm1, self.sigma1) else torch.relu_(z)
        z = _fast.conv_norm(self.pw2, self.norm2, self.dw2(z))  # eq. 2
        if not self.relu_after_norm2:
            return z
        return torch.relu(z) if _fast.hooked(self.pw2, self.norm2) else torch.relu_(z)  # text / authors' code

    def compute_conv_feature_map_size(self, spatial: Sequence[int]) -> int:
        n = _prod(spatial)
        return (self.in_channels + 3 * self.out_channels) * n  # dw1 (C_in), pw1, dw2, pw2 (C_out)


class LargeKernelAttention(nn.Module):
    """Attention part of EBlock / DFB (eqs. 3-4)::

        Z_LargeKernel = PointwiseConv(SpatialConv(DepthwiseConv(Z_{l-1})))   (3)
        Z_l = Z_{l-1} (x) ChannelConv_1x1(Z_LargeKernel)                     (4)

    DepthwiseConv: ``lk_kernel`` (5, padding 2); SpatialConv: depthwise ``dilated_kernel`` (7) with ``dilation``
    (3), "same" padding; PointwiseConv = ChannelConv_1x1 (one 1x1 convolution, see the module docstring), unless
    ``separate_channel_conv`` adds a second one. ``residual`` (default ``False``) returns ``Z (x) A + Z`` instead:
    eq. 4 and the authors' public code (``return u * attn``) have no residual around the Hadamard product; Sec.
    3.2's sentence "the residual connection maintains the integrity of information" is the only hint of one.
    Per-axis kernels of 1 (anisotropic nnU-Net plans) switch the large kernel off along that axis.
    """

    def __init__(self, conv_op: Type[_ConvNd], channels: int, lk_kernel: IntOrSeq = 5, dilated_kernel: IntOrSeq = 7,
                 dilation: IntOrSeq = 3, conv_bias: bool = True, separate_channel_conv: bool = False,
                 residual: bool = False):
        super().__init__()
        dim = convert_conv_op_to_dim(conv_op)
        k5, k7, d = _tuple(lk_kernel, dim), _tuple(dilated_kernel, dim), _tuple(dilation, dim)
        d = tuple(di if ki > 1 else 1 for di, ki in zip(d, k7))
        dw_op = _fast.depthwise_conv_op(conv_op)  # channels-last where it pays (same parameters)
        self.depthwise = dw_op(channels, channels, k5, padding=tuple(i // 2 for i in k5), groups=channels,
                                 bias=conv_bias)
        self.spatial = dw_op(channels, channels, k7, padding=tuple((k // 2) * di for k, di in zip(k7, d)),
                               dilation=d, groups=channels, bias=conv_bias)
        self.pointwise = conv_op(channels, channels, 1, bias=conv_bias)
        self.channel_conv = conv_op(channels, channels, 1, bias=conv_bias) if separate_channel_conv else None
        self.residual = residual
        self.channels = channels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        a = self.pointwise(self.spatial(self.depthwise(z)))  # eq. 3
        if self.channel_conv is not None:
            a = self.channel_conv(a)
        out = z * a  # eq. 4, Hadamard product
        return out + z if self.residual else out

    def compute_conv_feature_map_size(self, spatial: Sequence[int]) -> int:
        return (3 + (self.channel_conv is not None)) * self.channels * _prod(spatial)


class EBlock(nn.Module):
    """Encoder Block (Sec. 3.2, Fig. 2): convolution part (eqs. 1-2, ``C_in -> C_out``) then attention part (eqs. 3-4)."""

    def __init__(self, conv_op: Type[_ConvNd], in_channels: int, out_channels: int, kernel_size: IntOrSeq,
                 conv_bias: bool, norm_op: Type[nn.Module], norm_op_kwargs: dict, lk_kernel: IntOrSeq = 5,
                 dilated_kernel: IntOrSeq = 7, dilation: IntOrSeq = 3, separate_channel_conv: bool = False,
                 residual: bool = False, relu_after_norm2: bool = True):
        super().__init__()
        self.conv = ConvPart(conv_op, in_channels, out_channels, kernel_size, conv_bias, norm_op, norm_op_kwargs,
                             relu_after_norm2)
        self.attention = LargeKernelAttention(conv_op, out_channels, lk_kernel, dilated_kernel, dilation, conv_bias,
                                              separate_channel_conv, residual)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.attention(self.conv(z))

    def compute_conv_feature_map_size(self, spatial: Sequence[int]) -> int:
        return self.conv.compute_conv_feature_map_size(spatial) + self.attention.compute_conv_feature_map_size(spatial)


class DFB(nn.Module):
    """Decoder Fusion Block (Sec. 3.3, Fig. 3).

    Fusion part: the decoder map (``C_{s+1}`` channels) is upsampled by a transposed convolution with
    **kernel = stride = the pooling stride** (2x2 stride 2 in the paper configuration; it doubles the size -- the
    paper's "3x3, stride 1, padding 1" cannot), mapping ``C_{s+1} -> C_s``; then zero-padded to the skip's size
    (auto-resize: pooling floors odd sizes, the padding restores them, split as evenly as possible with the extra
    voxel at the end), and concatenated with the skip (``[skip, up]``, ``2 C_s`` channels). Then a convolution part
    ``2 C_s -> C_s`` and an attention part as in the encoder (an :class:`EBlock`).
    """

    def __init__(self, conv_op: Type[_ConvNd], below_channels: int, skip_channels: int, stride: IntOrSeq,
                 kernel_size: IntOrSeq, conv_bias: bool, norm_op: Type[nn.Module], norm_op_kwargs: dict,
                 **attention_kwargs):
        super().__init__()
        dim = convert_conv_op_to_dim(conv_op)
        self.stride = _tuple(stride, dim)
        self.upsample = get_matching_convtransp(conv_op)(below_channels, skip_channels, self.stride, self.stride,
                                                         bias=conv_bias)
        self.block = EBlock(conv_op, 2 * skip_channels, skip_channels, kernel_size, conv_bias, norm_op,
                            norm_op_kwargs, **attention_kwargs)
        self.skip_channels = skip_channels

    def forward(self, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.upsample(below)
        diff = [s - u for s, u in zip(skip.shape[2:], up.shape[2:])]
        if any(d < 0 for d in diff):
            raise ValueError(f"DFB: upsampled map {tuple(up.shape[2:])} is larger than the skip "
                             f"{tuple(skip.shape[2:])}")
        if any(diff):
            pad = []
            for d in reversed(diff):  # F.pad takes the last axis first
                pad += [d // 2, d - d // 2]
            up = F.pad(up, pad)
        return self.block(torch.cat((skip, up), dim=1))

    def compute_conv_feature_map_size(self, skip_spatial: Sequence[int], below_spatial: Sequence[int]) -> int:
        """Feature maps at the skip's size ``skip_spatial`` coming from a map of size ``below_spatial``."""
        up = [b * s for b, s in zip(below_spatial, self.stride)]
        return self.skip_channels * _prod(up) + self.block.compute_conv_feature_map_size(skip_spatial)


def _check_poolable(stage: int, size: Sequence[int], stride: Sequence[int], input_size=None) -> None:
    for axis, (n, st) in enumerate(zip(size, stride)):
        if st > 1 and n < st:
            raise ValueError(f"DLKUNet: stage {stage} cannot max-pool axis {axis} of size {int(n)} with stride {st} "
                             f"(input too small for the plans' strides)")


class DLKUNet(ScaffoldUNet):
    """DLKUNet (Sec. 3, Fig. 1), one class for 2D and 3D (``conv_op``).

    Parameters (dynamic_network_architectures / nnU-Net plans names; paper symbols in brackets):
      input_channels; n_stages (number of EBlocks: S 3, M 4, L 5); features_per_stage (channels per stage, used
      when ``base_features`` is None); conv_op (``nn.Conv2d`` / ``nn.Conv3d``); kernel_sizes (per-stage depthwise
      kernel of the convolution part, 3x3 in the paper); strides (per-stage max-pooling stride, ``[1, 2, 2, ...]`` =
      2x2 max-pooling in the paper); num_classes (reprojection layer outputs); deep_supervision;
      conv_bias; norm_op / norm_op_kwargs (BN in the paper; default: BatchNorm matching ``conv_op``);
      base_features [C] and max_features: if ``base_features`` is set, stage ``s`` has
      ``min(C * 2**s, max_features)`` channels (the paper's rule, Table 1: C = 96, widest stage S 384 / M 768 /
      L 1536) and ``features_per_stage``/``width_factor`` are not used;
      width_factor: otherwise stage ``s`` has ``round(features_per_stage[s] * width_factor)`` channels (the
      ``dlkunet_*_nnunetwidth`` variants: S 1/4, M 1/2, L 1);
      depth: the paper's number of encoder stages (S 3, M 4, L 5): the first ``depth`` stages of
      ``kernel_sizes``/``strides``/``features_per_stage`` are kept; ``ValueError`` if ``n_stages < depth``;
      dw_kernel: the convolution part's depthwise kernel (Table 5's 5DW / 7DW) on every axis where
      ``kernel_sizes`` has a kernel > 1 (default: ``kernel_sizes``);
      lk_kernel (5), dilated_kernel (7), dilation (3): the attention part's kernels (Table 5);
      separate_channel_conv: a second 1x1 conv in eq. 4 (literal reading; not the Table 1 network);
      attention_residual: ``Z (x) A + Z`` instead of eq. 4's ``Z (x) A`` (default off, parameter-free);
      relu_after_norm2: ReLU after the second BN of the convolution part (default on: the text and the authors'
      code; ``False`` = eq. 2 literally; parameter-free).

    ``n_conv_per_stage`` and the plans' nonlinearity are not used: the blocks are fixed by the paper (ReLU, eq. 1).
    Output: logits; with deep supervision a list of ``n_stages - 1`` maps, highest resolution first.
    """

    def __init__(self, input_channels: int, n_stages: int, features_per_stage: Union[int, Sequence[int]],
                 conv_op: Type[_ConvNd], kernel_sizes: Union[int, Sequence], strides: Union[int, Sequence],
                 num_classes: int, deep_supervision: bool = False, conv_bias: bool = True,
                 norm_op: Optional[Type[nn.Module]] = None, norm_op_kwargs: Optional[dict] = None,
                 base_features: Optional[int] = None, max_features: Optional[int] = None,
                 width_factor: float = 1.0, lk_kernel: int = 5, dilated_kernel: int = 7, dilation: int = 3,
                 separate_channel_conv: bool = False, attention_residual: bool = False,
                 relu_after_norm2: bool = True, depth: Optional[int] = None, dw_kernel: Optional[int] = None):
        super().__init__()
        dim = convert_conv_op_to_dim(conv_op)
        if depth is not None:  # the paper's depth: the first `depth` stages of the plans
            if n_stages < depth:
                raise ValueError(f"DLKUNet: the paper's depth {depth} (S 3, M 4, L 5 encoder stages, Table 1) needs "
                                 f"plans with at least {depth} stages, these have {n_stages}")
            n_stages = int(depth)
            features_per_stage, kernel_sizes, strides = (
                list(v)[:n_stages] if isinstance(v, (list, tuple)) else v
                for v in (features_per_stage, kernel_sizes, strides))
        if n_stages < 2:
            raise ValueError(f"DLKUNet: n_stages must be >= 2 (one EBlock and one DFB at least), got {n_stages}")
        if not width_factor > 0:
            raise ValueError(f"DLKUNet: width_factor must be > 0, got {width_factor}")
        if base_features is not None:  # the paper's rule (Table 1): C * 2**s, capped at the widest stage
            cap = max_features if max_features is not None else base_features * 2 ** (n_stages - 1)
            features = [int(min(base_features * 2 ** s, cap)) for s in range(n_stages)]
        else:  # nnU-Net plans: the plans' widths times the variant's width factor (S 1/4, M 1/2, L 1)
            fs = [features_per_stage] * n_stages if isinstance(features_per_stage, int) else list(features_per_stage)
            features = [max(1, int(round(int(f) * width_factor))) for f in fs]
        ks = check_stage_list("kernel_sizes", kernel_sizes, n_stages, dim, owner="DLKUNet", odd=True, axis_sep=" ")
        st = check_stage_list("strides", strides, n_stages, dim, owner="DLKUNet", axis_sep=" ")
        per_stage("features_per_stage", features, n_stages, owner="DLKUNet")
        # the convolution part's depthwise kernels: the plans' (or dw_kernel on the axes the plans convolve)
        cks = ks if dw_kernel is None else [tuple(int(dw_kernel) if ki > 1 else 1 for ki in k) for k in ks]
        if norm_op is None:
            norm_op = get_matching_batchnorm(conv_op)
        norm_op_kwargs = dict(norm_op_kwargs or {})
        # large kernels only along axes where the plans convolve (kernel > 1), per stage
        attention_kwargs = [dict(lk_kernel=tuple(lk_kernel if ki > 1 else 1 for ki in k),
                                 dilated_kernel=tuple(dilated_kernel if ki > 1 else 1 for ki in k),
                                 dilation=dilation, separate_channel_conv=separate_channel_conv,
                                 residual=attention_residual, relu_after_norm2=relu_after_norm2) for k in ks]
        # encoder (Sec. 3.1): 2x2 max pooling (the plans' strides), then an EBlock C_{s-1} -> C_s
        self.encoder = UNetEncoder(
            input_channels, features, st, conv_op=conv_op, kernel_sizes=ks, check_size=_check_poolable,
            make_down=lambda s, cin, stride: max_pool(conv_op, stride),
            make_block=lambda s, cin, c: EBlock(conv_op, cin, c, cks[s], conv_bias, norm_op, norm_op_kwargs,
                                                **attention_kwargs[s]))
        # decoder: one DFB per skip below the bottleneck (deepest first), each with a 1x1 head; the head at full
        # resolution is the paper's reprojection layer, the others nnU-Net's deep-supervision heads
        self.decoder = UNetDecoder(
            self.encoder, num_classes, deep_supervision,
            make_stage=lambda s: DFB(conv_op, features[s + 1], features[s], st[s + 1], cks[s], conv_bias, norm_op,
                                     norm_op_kwargs, **attention_kwargs[s]),
            make_head=lambda s: conv_op(features[s], num_classes, 1, bias=True))
        _fast.fast_convs(self)  # 3D convolutions off PyTorch's native CPU kernel (same state_dict)
        self.features_per_stage = features

    def check_input_size(self, spatial: Sequence[int]) -> None:
        """ValueError naming the stage, axis and size for a patch the network cannot take (a patch below its
        minimum: an axis smaller than the stride that pools it), or with the wrong number of axes."""
        dim = convert_conv_op_to_dim(self.encoder.conv_op)
        if len(spatial) != dim:
            raise ValueError(f"DLKUNet: patch {tuple(spatial)} has {len(spatial)} axes, the network is {dim}D")
        self.encoder.stage_sizes(spatial)

    @staticmethod
    def initialize(module: nn.Module) -> None:
        InitWeights_He(1e-2)(module)


# ---------------------------------------------------------------------------------------------------------------
# Registered variants: default construction = Table 1's configuration (Synapse: 224x224, 1 channel, 9 classes).
_PAPER_COMMON = dict(input_channels=1, num_classes=9, conv_op="torch.nn.Conv2d", conv_bias=True,
                     norm_op="torch.nn.BatchNorm2d", norm_op_kwargs={"eps": 1e-5, "momentum": 0.1, "affine": True},
                     deep_supervision=False)

#: variant -> (number of EBlocks = stages, widest stage); Table 1
TABLE1 = {"s": (3, 384), "m": (4, 768), "l": (5, 1536)}
#: Table 1 as printed: params (M), FLOPs (G) at 224x224
TABLE1_PAPER = {"s": (1.13, 15.95), "m": (4.49, 22.84), "l": (17.70, 29.64)}
#: the paper's width rule: C = 96 at full resolution, doubling per stage (Sec. 3.4)
PAPER_C = 96
#: nnunet-ext's width rule on plans (``dlkunet_*_nnunetwidth``): the widest stages of Table 1 relative to L's
WIDTH_FACTOR = {v: cap / TABLE1["l"][1] for v, (_, cap) in TABLE1.items()}
#: Table 5 (DLKUNet-L): name -> (the convolution part's depthwise kernel, attention's depthwise, dilated kernel)
TABLE5 = {"5dw": (5, 5, 7), "7dw": (7, 5, 7), "lka1": (3, 3, 7), "lka2": (3, 5, 5)}
#: the registry-wide contract test's small plans have 3-4 stages and widths 8-32: the blocks at the plans' depth
_TEST_KWARGS = dict(depth=None, base_features=4)


def _paper_config(n: int, cap: int) -> dict:
    return dict(_PAPER_COMMON, n_stages=n, base_features=PAPER_C, max_features=cap,
                features_per_stage=[min(PAPER_C * 2 ** s, cap) for s in range(n)],
                kernel_sizes=[[3, 3]] * n, strides=[[1, 1]] + [[2, 2]] * (n - 1))


def _register_variants() -> None:
    """DLKUNet-S/M/L by the paper's rule, Table 5's variants of L, and S/M/L at the plans' depth and widths."""
    for v, (n, cap) in TABLE1.items():
        register(f"dlkunet_{v}", DLKUNet, family="dlkunet",
                 description=f"DLKUNet-{v.upper()} (Table 1: {n} stages, C=96 doubling, {TABLE1_PAPER[v][0]} M "
                             f"params); on plans the plans' first {n} stages",
                 variant_kwargs=dict(depth=n, base_features=PAPER_C), paper_kwargs=_paper_config(n, cap),
                 test_kwargs=_TEST_KWARGS)
    n, cap = TABLE1["l"]
    for key, (dw, lk, dil) in TABLE5.items():
        register(f"dlkunet_l_{key}", DLKUNet, family="dlkunet",
                 description=f"DLKUNet-{key.upper()} (Table 5): DLKUNet-L with depthwise {dw}x{dw}, attention "
                             f"kernels {lk}x{lk} and {dil}x{dil} (dilation 3)",
                 variant_kwargs=dict(depth=n, base_features=PAPER_C, dw_kernel=dw, lk_kernel=lk,
                                     dilated_kernel=dil),
                 paper_kwargs=_paper_config(n, cap), test_kwargs=_TEST_KWARGS)
    for v, (n, cap) in TABLE1.items():
        register(f"dlkunet_{v}_nnunetwidth", DLKUNet, family="dlkunet",
                 description=f"DLKUNet-{v.upper()} blocks, nnunet-ext's rule on plans: every stage, "
                             f"{WIDTH_FACTOR[v]:g} x the plans' widths (paper configuration: Table 1)",
                 variant_kwargs=dict(width_factor=WIDTH_FACTOR[v]), paper_kwargs=_paper_config(n, cap))


_register_variants()
