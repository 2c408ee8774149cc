"""MoNet: a shallow U-Net of repeated decreasingly dilated convolution (RDDC) blocks.

Knolle, Kaissis et al., "Efficient, high-performance pancreatic segmentation using multi-scale feature
extraction" (2021; code: github.com/TUM-AIMED/MoNet). Symbols below follow the paper and its code.

Building blocks
---------------
* **Convolution block** ``B(x; d)`` (paper, Methods): 3×3 convolution (dilation ``d``, no bias) → BatchNorm → ELU.
* **RDDC block** (paper Fig. 3, lost from the text; wiring settled by the authors' published code). With ``c_i``
  the i-th convolution block and ``D`` spatial dropout (p = 0.2, after ``c_1``–``c_3``)::

      c1 = D(B(x;      d=4))
      c2 = D(B(x + c1; d=3))        # residual-type short connection 1
      c3 = D(B(c2;     d=2))
      c4 =   B(c2 + c3; d=1)        # residual-type short connection 2 -> block output

  Input and output have the same width ``f`` (the preceding convolution block sets it).
* **Strided downsampling**: a convolution block with a 4×4 kernel and stride 2 that keeps the width of the
  stage it leaves (the paper's text says 3×3; the authors' code uses 4×4, which we follow).
* **Upsampling**: 4×4 transposed convolution, stride 2, keeping its input width, → BatchNorm → ELU; then the
  long skip is concatenated in front (``[skip, up]``), a convolution block maps to the stage width, an RDDC follows.

MoNet (paper Fig. 2): stage s = [down-conv (s > 0)] → B(·; 1) → RDDC, widths ``16·2^s``, two stride-2
downsamplings (256×256 → 64×64 bottleneck), decoder mirrors it, 1×1 head. The paper's head is a 1×1 convolution
without bias → BatchNorm → sigmoid on one merged foreground channel (``head_norm=True``, ``num_classes=1``; the
model returns logits, apply the sigmoid outside).

Parameter count of the paper configuration (``create("monet")``): 399,776 convolution weights + 945 BatchNorm
channels × 2 (γ, β) = **401,666 trainable**; + 945 × 2 running statistics (mean, var) = 1,890; total **403,556**
= the paper's count (Keras counts BatchNorm moving mean/variance as (non-trainable) parameters).

nnU-Net adaptation (constructor defaults; what :func:`create_from_plans` builds)
-------------------------------------------------------------------------------
* One class for 2D and 3D: ``conv_op`` from the plans; BatchNorm, dropout and transposed conv are derived from it.
* Stages follow the plans: ``n_stages``, per-stage ``strides`` and ``kernel_sizes`` (the "3×3" convolutions use the
  plans' kernel of the stage; dilation ``d`` acts on the axes whose kernel is > 1, padding ``d·(k-1)/2``).
  MoNet's own Conv–BN–ELU blocks and spatial dropout are kept (plans' norm/nonlin/dropout/bias are not taken).
* Widths: the plans' ``features_per_stage``, or ``n_filters_init·2^s`` (capped at the plans' widest stage) when
  ``n_filters_init`` is given (the ``monet`` variant: 16, the paper's).
* Down/up-sampling kernel **per axis**: on an axis with stride ``s_a > 1`` the kernel is ``2·s_a`` (4 for nnU-Net's
  stride 2, the paper's 4×4) with padding ``s_a/2`` (1): ``out = in / s_a`` for the strided conv and
  ``out = in · s_a`` for the transposed conv, exactly nnU-Net's sizes. On an axis with stride 1 (anisotropic
  plans) the kernel is the stage's plans kernel ``k_a`` (odd) with padding ``(k_a-1)/2``: size unchanged. An axis
  of a strided stage whose size is not divisible by the stride raises ``ValueError`` (stage, axis, size), as
  nnU-Net's planner never produces one.
* Heads: a 1×1 convolution (with bias, logits for nnU-Net's softmax/CE+Dice) per decoder stage, all built always;
  with ``deep_supervision`` the outputs are returned highest resolution first (nnU-Net's convention), otherwise
  only the full-resolution one. ``.decoder.deep_supervision`` is the switch nnU-Net flips.
"""
from __future__ import annotations

from typing import Optional, Sequence, Type, Union

import torch
from dynamic_network_architectures.building_blocks.helper import (
    convert_conv_op_to_dim, get_matching_batchnorm, get_matching_convtransp, get_matching_dropout)
from torch import nn
from torch.nn.modules.conv import _ConvNd

from . import _fast, _fast_act, _fast_mode
from ._common import as_tuple as _tup, check_stage_list, prod
from ._registry import register
from ._scaffold import ScaffoldUNet, UNetDecoder, UNetEncoder

__all__ = ["ConvBlock", "RDDCBlock", "MoNet", "paper_parameter_counts"]

#: the paper's dilation rates of the four convolution blocks of an RDDC block, in order
PAPER_DILATIONS = (4, 3, 2, 1)


class ELU(nn.ELU):
    """ELU (α = 1) of the paper's convolution blocks.

    Computed by ``_fast_act.elu``: without autograd (inference) as ``max(x, exp(min(x, 0)) - 1)``, which equals
    ``ELU(x) = x if x > 0 else exp(x) - 1`` exactly (for x > 0 the second term is 0 < x; for x ≤ 0,
    exp(x) - 1 ≥ x); with autograd the same forward and the backward ``1 if y > 0 else y + 1`` (PyTorch's own
    ELU on the reference path). Timings: docs/fast_paths.md.
    """

    def __init__(self):
        super().__init__(alpha=1.0, inplace=False)

    def forward(self, x, owned: bool = False):
        # owned: x is a fresh temporary nobody else holds -> in place on the fast path (_fast_act.elu)
        return _fast_act.elu(x, owned)


class ConvBlock(nn.Module):
    """Convolution block ``B(x; d)`` of the paper: convolution (no bias) → BatchNorm → ELU.

    ``kernel_size``/``stride``/``padding``/``dilation`` are per-axis tuples (the caller chooses them).
    """

    def __init__(self, conv_op: Type[_ConvNd], in_channels: int, out_channels: int, kernel_size, stride=1,
                 dilation=1, padding=None):
        super().__init__()
        dim = convert_conv_op_to_dim(conv_op)
        k, s, d = _tup(kernel_size, dim), _tup(stride, dim), _tup(dilation, dim)
        p = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d)) if padding is None else _tup(padding, dim)
        self.conv = conv_op(in_channels, out_channels, k, s, p, d, bias=False)
        self.norm = get_matching_batchnorm(conv_op)(out_channels)
        self.nonlin = ELU()
        self.stride = s
        self.out_channels = out_channels

    def forward(self, x):
        y = _fast.conv_norm(self.conv, self.norm, x)  # BatchNorm folded in eval mode
        return self.nonlin(y, owned=not _fast_mode.hooked(self.conv, self.norm, self.nonlin))

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        """numel of the conv output for an input of spatial size ``input_size`` (its output size is returned
        by :meth:`output_size`)."""
        return self.out_channels * prod(self.output_size(input_size))

    def output_size(self, input_size):
        c = self.conv
        return [(i + 2 * p - d * (k - 1) - 1) // s + 1
                for i, k, s, p, d in zip(input_size, c.kernel_size, c.stride, c.padding, c.dilation)]


class _UpBlock(nn.Sequential):
    """Transposed convolution -> BatchNorm -> ELU (an ``nn.Sequential``: keys ``0``, ``1``, ``2``), the BatchNorm
    folded into the transposed convolution in eval mode."""

    def forward(self, x):
        return self[2](_fast.conv_transpose_norm(self[0], self[1], x), owned=not _fast_mode.hooked(*self))


class RDDCBlock(nn.Module):
    """Repeated decreasingly dilated convolutions (paper Fig. 3, wiring of the authors' code)::

        c1 = D(B(x; d1)); c2 = D(B(x + c1; d2)); c3 = D(B(c2; d3)); out = B(c2 + c3; d4)

    with ``(d1, d2, d3, d4) = (4, 3, 2, 1)`` and ``D`` spatial dropout (``Dropout2d``/``Dropout3d``, p = 0.2).
    ``kernel_size`` is per axis (3×3 in the paper); dilation is applied only on axes with a kernel > 1.
    """

    def __init__(self, conv_op: Type[_ConvNd], channels: int, kernel_size=3, dilations=PAPER_DILATIONS,
                 dropout_p: float = 0.2):
        super().__init__()
        if len(dilations) != 4:
            raise ValueError(f"RDDC block: 4 dilation rates expected, got {dilations}")
        dim = convert_conv_op_to_dim(conv_op)
        k = _tup(kernel_size, dim)
        self.convs = nn.ModuleList([
            ConvBlock(conv_op, channels, channels, k, 1, tuple(d if ki > 1 else 1 for ki in k)) for d in dilations])
        drop = get_matching_dropout(dimension=dim)
        self.drops = nn.ModuleList([drop(dropout_p) if dropout_p > 0 else nn.Identity() for _ in range(3)])
        self.channels = channels

    def forward(self, x):
        c1 = self.drops[0](self.convs[0](x))
        c2 = self.drops[1](self.convs[1](x + c1))
        c3 = self.drops[2](self.convs[2](c2))
        return self.convs[3](c2 + c3)

    def compute_conv_feature_map_size(self, input_size) -> int:
        return 4 * self.channels * prod(input_size)


def _sampling_kernel_and_padding(stride: Sequence[int], kernel: Sequence[int], stage: int):
    """Per-axis kernel/padding of the strided conv and the transposed conv of a stage (see module docstring)."""
    ks, ps = [], []
    for axis, (s, k) in enumerate(zip(stride, kernel)):
        if s > 1:
            if s % 2:
                raise ValueError(f"MoNet: stage {stage}, axis {axis}: stride {s} is odd; the 2·s kernel with "
                                 f"padding s/2 needs an even stride")
            ks.append(2 * s)
            ps.append(s // 2)
        else:
            if k % 2 == 0:
                raise ValueError(f"MoNet: stage {stage}, axis {axis}: kernel size {k} must be odd on an axis "
                                 f"with stride 1")
            ks.append(k)
            ps.append((k - 1) // 2)
    return tuple(ks), tuple(ps)


def _check_divisible(stage: int, size: Sequence[int], stride: Sequence[int], input_size=None) -> None:
    for axis, (n, st) in enumerate(zip(size, stride)):
        if n % st:
            raise ValueError(f"MoNet: stage {stage}, axis {axis}: size {n} is not divisible by the stride {st}")


class MoNet(ScaffoldUNet):
    """MoNet (Knolle, Kaissis et al. 2021) for 2D and 3D, in dynamic_network_architectures' conventions.

    Args (nnU-Net plans' names where they exist; see the module docstring for the adaptation):
        input_channels, num_classes, deep_supervision: as in nnU-Net.
        n_stages, features_per_stage, conv_op, kernel_sizes, strides: from the plans (paper: 3 stages,
            16/32/64, Conv2d, 3×3, strides 1, 2, 2).
        n_filters_init: if given, the widths are ``n_filters_init·2^s`` capped at ``max(features_per_stage)``
            (the paper's 16 initial filters) instead of the plans' widths.
        dilations: the RDDC dilation rates (4, 3, 2, 1).
        dropout_p: spatial dropout rate inside the RDDC blocks (0.2).
        head_bias / head_norm: the 1×1 heads' bias and a BatchNorm after them (paper: no bias + BatchNorm;
            nnU-Net adaptation: bias, no norm).
        ds_heads: build the deep-supervision heads of the lower-resolution decoder stages (nnU-Net: always, so
            the state_dict is the same with deep supervision on and off; the paper's network has only the
            full-resolution head: ``False``, which forbids ``deep_supervision=True``).
    """

    def __init__(self, input_channels: int, n_stages: int, features_per_stage: Union[int, Sequence[int]],
                 conv_op: Type[_ConvNd], kernel_sizes: Union[int, Sequence], strides: Union[int, Sequence],
                 num_classes: int, deep_supervision: bool = False, n_filters_init: Optional[int] = None,
                 dilations: Sequence[int] = PAPER_DILATIONS, dropout_p: float = 0.2, head_bias: bool = True,
                 head_norm: bool = False, ds_heads: bool = True):
        super().__init__()
        dim = convert_conv_op_to_dim(conv_op)
        if isinstance(features_per_stage, int):
            features_per_stage = [features_per_stage] * n_stages
        if isinstance(kernel_sizes, int) or (kernel_sizes and isinstance(kernel_sizes[0], int)
                                             and len(kernel_sizes) != n_stages):
            kernel_sizes = [kernel_sizes] * n_stages
        if isinstance(strides, int) or (strides and isinstance(strides[0], int) and len(strides) != n_stages):
            strides = [strides] * n_stages
        if not (len(features_per_stage) == len(kernel_sizes) == len(strides) == n_stages):
            raise ValueError(f"MoNet: n_stages={n_stages} but {len(features_per_stage)} widths, "
                             f"{len(kernel_sizes)} kernel sizes and {len(strides)} strides were given")
        if n_stages < 2:
            raise ValueError(f"MoNet: n_stages={n_stages}; at least 2 stages (one downsampling) are needed")
        kernel_sizes = [list(k) for k in check_stage_list("kernel_sizes", kernel_sizes, n_stages, dim, owner="MoNet",
                                                          odd=True)]
        strides = [list(st) for st in check_stage_list("strides", strides, n_stages, dim, owner="MoNet")]
        if any(a != 1 for a in strides[0]):
            raise ValueError(f"MoNet: stage 0: strides {strides[0]}; the first stage runs at input resolution "
                             f"(stride 1 on every axis)")
        for s, (k, st) in enumerate(zip(kernel_sizes, strides)):
            _sampling_kernel_and_padding(st, k, s)  # validates the strides (even where > 1)
        if n_filters_init is not None:
            cap = max(features_per_stage)
            features_per_stage = [min(n_filters_init * 2 ** s, cap) for s in range(n_stages)]
        if deep_supervision and not ds_heads:
            raise ValueError("MoNet: deep_supervision=True needs the deep-supervision heads (ds_heads=True)")
        f, ks, dilations = list(features_per_stage), kernel_sizes, tuple(dilations)
        bn = get_matching_batchnorm(conv_op)

        def make_down(s, cin, st):  # strided 4x4 conv block keeping the width of the stage it leaves
            if s == 0:
                return None
            dk, dp = _sampling_kernel_and_padding(st, ks[s], s)
            return ConvBlock(conv_op, cin, cin, dk, st, 1, dp)

        # stage s: [down-conv (s > 0)] -> B(.; 1) to f_s -> RDDC(f_s); stages[s] is one nn.Sequential
        self.encoder = UNetEncoder(
            input_channels, f, strides, make_down=make_down, conv_op=conv_op, kernel_sizes=ks, layout="sequential",
            make_block=lambda s, cin, c: [ConvBlock(conv_op, cin, c, ks[s]),
                                          RDDCBlock(conv_op, c, ks[s], dilations, dropout_p)],
            check_size=_check_divisible)

        def make_up(s):  # 4x4 transposed conv (width f_{s+1} kept) -> BN -> ELU
            uk, up = _sampling_kernel_and_padding(strides[s + 1], ks[s + 1], s + 1)
            return _UpBlock(get_matching_convtransp(conv_op)(f[s + 1], f[s + 1], uk, strides[s + 1], up,
                                                             bias=False), bn(f[s + 1]), ELU())

        def make_head(s):  # the paper's network has only the full-resolution head (ds_heads=False)
            if not (ds_heads or s == 0):
                return nn.Identity()
            head = conv_op(f[s], num_classes, 1, 1, 0, bias=head_bias)
            return nn.Sequential(head, bn(num_classes)) if head_norm else head

        # decoder stage s: [skip_s, up] -> B(.; 1) to f_s -> RDDC(f_s), 1x1 head; all heads always exist
        self.decoder = UNetDecoder(
            self.encoder, num_classes, deep_supervision, make_up=make_up, up_name="ups", fuse="cat_skip_first",
            make_stage=lambda s: nn.Sequential(ConvBlock(conv_op, f[s] + f[s + 1], f[s], ks[s]),
                                               RDDCBlock(conv_op, f[s], ks[s], dilations, dropout_p)),
            make_head=make_head)
        _fast.fast_convs(self)  # 3D convolutions off PyTorch's native CPU kernel (same state_dict)

    def forward(self, x: torch.Tensor):
        """Logits (a list, highest resolution first, with deep supervision). On the fast path a 2D network runs in
        channels-last layout (``_fast_act.channels_last_2d``); outputs are contiguous either way."""
        return _fast_act.contiguous_outputs(super().forward(_fast_act.channels_last_2d(x)))

    def check_input_size(self, input_size):
        if len(input_size) != convert_conv_op_to_dim(self.encoder.conv_op):
            raise ValueError(f"MoNet: input_size {tuple(input_size)} does not match the conv op's dimension")

    @staticmethod
    def initialize(module):
        """Uniform He initialisation (the paper's; Keras ``he_uniform`` = ``kaiming_uniform_`` with fan_in, ReLU
        gain, which for a transposed conv also uses ``out_channels·prod(kernel)`` like Keras); zero biases."""
        if isinstance(module, _ConvNd):
            nn.init.kaiming_uniform_(module.weight, a=0, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def paper_parameter_counts(model: nn.Module) -> dict:
    """Trainable parameters, BatchNorm running statistics (running_mean + running_var elements, not
    num_batches_tracked) and their sum (the Keras count the paper reports)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    running = sum(m.running_mean.numel() + m.running_var.numel() for m in model.modules()
                  if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats)
    return {"trainable": trainable, "bn_running_stats": running, "total": trainable + running}


_PAPER = dict(input_channels=1, num_classes=1, n_stages=3, features_per_stage=[16, 32, 64],
              conv_op="torch.nn.Conv2d", kernel_sizes=[[3, 3]] * 3, strides=[[1, 1], [2, 2], [2, 2]],
              deep_supervision=False, head_bias=False, head_norm=True, ds_heads=False)


def _register_variants() -> None:
    """MoNet with the paper's widths (16 * 2^s) and with the plans' widths; both at the paper configuration."""
    register("monet", MoNet, family="monet", variant_kwargs={"n_filters_init": 16}, paper_kwargs=_PAPER,
             description="MoNet (Knolle, Kaissis et al. 2021): shallow U-Net of RDDC blocks (dilations 4-3-2-1), "
                         "16 initial filters, 4x4 strided/transposed sampling; paper config 256x256, 1 in, "
                         "sigmoid head")
    register("monet_plans_widths", MoNet, family="monet", variant_kwargs={}, paper_kwargs=_PAPER,
             description="MoNet with the plans' features_per_stage (nnU-Net widths) instead of 16*2^s")


_register_variants()
