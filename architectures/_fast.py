"""Fast execution paths of the convolutions of nnunet-ext's networks that compute the same function (a private
module: not a family, registers nothing).

Contract: everything here changes how a result is computed, never what. No parameter or buffer is added, renamed
or reshaped (state_dicts and checkpoints are unchanged); outputs and gradients equal the reference path's within
fp32 rounding (``tests/unit/test_efficiency.py``); it lives inside the networks' ``forward``, so it holds in
``nnUNetv2_train`` and ``nnUNetv2_predict`` alike; outputs are contiguous. The switch back to the reference path
(``nnUNet_ext_reference=1``, :func:`reference_mode`) and the device switches live in ``_fast_mode`` (re-exported here);
the paths outside the convolutions (ELU, a whole network in channels-last) in ``_fast_act``.

The paths, per operator type: depth-wise convolutions in channels-last layout where it pays
(:func:`channels_last_pays`, :class:`DWConv2d`, :class:`DWConv3d`) and with their own backward
(:class:`_DepthwiseSame`); dilated convolutions as undilated ones on the input's phase sub-lattices
(:func:`dilated_as_phases`; depth-wise, and dense 3D ones: :func:`_dense_phases`); 3D convolutions that PyTorch
would run on its native CPU kernel with permuted axes (:func:`conv_forward`, :func:`fast_convs`); an eval-mode
BatchNorm folded into the preceding convolution (:func:`conv_norm`, :func:`conv_transpose_norm`,
:func:`fold_units`). Which path pays where, and by how much: docs/fast_paths.md.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU
from torch.nn.modules.batchnorm import _BatchNorm

from ._fast_mode import (ENV_CL_DEVICES, ENV_DW_BACKWARD_DEVICES, ENV_LAYOUT_DEVICES, ENV_PHASES_DEVICES,
                         ENV_REFERENCE, cl_devices, dw_backward_devices, hooked, layout_devices, phases_devices,
                         reference, reference_mode)

__all__ = ["ENV_REFERENCE", "ENV_CL_DEVICES", "ENV_LAYOUT_DEVICES", "ENV_PHASES_DEVICES", "ENV_DW_BACKWARD_DEVICES",
           "cl_devices", "layout_devices", "phases_devices", "dw_backward_devices", "reference", "reference_mode",
           "hooked", "channels_last_pays",
           "DWConv2d", "DWConv3d", "dilated_as_phases", "depthwise_conv_op", "conv_norm", "conv_transpose_norm",
           "foldable_bn", "run_sequence", "FoldingConvDropoutNormReLU", "fold_units", "conv_forward",
           "conv_transpose_forward", "FastConv3d", "FastConvTranspose3d", "fast_convs"]


def channels_last_pays(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether a depth-wise convolution ``conv`` on input ``x`` runs in channels-last layout (the layout is switched
    for the convolution alone): on the fast path and a device of ``layout_devices()``, with autograd every 3D one and
    the dilated 2D ones, without autograd (inference) the dilated 3D ones only."""
    if reference() or x.ndim not in (4, 5) or x.device.type not in layout_devices():
        return False
    dilated = any(int(d) > 1 for d in conv.dilation)
    if torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad):
        return x.ndim == 5 or dilated
    return x.ndim == 5 and dilated


def _same_stride1(conv) -> bool:
    """Stride 1 and "same" zero padding ``d (k - 1) / 2`` with odd kernels on every axis (the one definition that
    :func:`_phases_apply` and :func:`_dw_same` share)."""
    return (all(int(v) == 1 for v in conv.stride) and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str)
            and all(k % 2 == 1 and p == d * (k // 2) for k, p, d in zip(conv.kernel_size, conv.padding, conv.dilation)))


def _phases_apply(conv, x: torch.Tensor) -> bool:
    """A dilated, stride-1, "same"-padded convolution on a device of ``phases_devices()``: :func:`dilated_as_phases`."""
    return (not reference() and x.ndim in (4, 5) and x.device.type in phases_devices()
            and any(int(d) > 1 for d in conv.dilation) and _same_stride1(conv))


_CONV = {4: F.conv2d, 5: F.conv3d}


def dilated_as_phases(conv, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """A dilated convolution (dilation d_a, kernel k_a, stride 1, padding d_a (k_a - 1) / 2) computed as an
    UNdilated one on the d_0 x d_1 (x d_2) phase sub-lattices of the input stacked in the batch axis
    (space-to-batch): output voxel o = d q + p reads x[d (q + j - k // 2) + p], i.e. tap j of sub-lattice p at q,
    so every output is the same sum of the same products. The input is zero-padded at the end to a multiple of d
    (zeros where the convolution's own padding has zeros) and the output cropped. Inner layout: channels-last with
    autograd in 3D, contiguous otherwise."""
    dims, d = x.ndim - 2, [int(v) for v in conv.dilation]
    n = [int(v) for v in x.shape[2:]]
    pad_end = [(-ni) % di for ni, di in zip(n, d)]
    if any(pad_end):
        x = F.pad(x, [v for pe in reversed(pad_end) for v in (0, pe)])
    N, C = int(x.shape[0]), int(x.shape[1])
    s = [(ni + pe) // di for ni, pe, di in zip(n, pad_end, d)]
    z = x.reshape(N, C, *[v for si, di in zip(s, d) for v in (si, di)])
    z = z.permute(0, *[3 + 2 * i for i in range(dims)], 1, *[2 + 2 * i for i in range(dims)])
    z = z.reshape(N * math.prod(d), C, *s)
    if dims == 3 and torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        z = z.contiguous(memory_format=torch.channels_last_3d)
    y = _CONV[x.ndim](z, weight, bias, 1, [k // 2 for k in conv.kernel_size], 1, conv.groups)
    co = int(y.shape[1])
    y = y.reshape(N, *d, co, *s).permute(0, dims + 1, *[v for i in range(dims) for v in (dims + 2 + i, 1 + i)])
    y = y.reshape(N, co, *[si * di for si, di in zip(s, d)])
    if any(pad_end):
        y = y[(Ellipsis, *(slice(0, ni) for ni in n))]
    return y.contiguous()


#: aten's ConvParams::use_mkldnn: a float32 CPU convolution with batch 1, one group and a kernel not larger than 3 in
#: its last two axes runs oneDNN only if N * C * size(2) * size(3) > 20480, else PyTorch's native kernel
#: (slow_conv3d)
_NATIVE_LIMIT = 20480


def _native_axes(x: torch.Tensor, kernel_size, groups: int) -> Optional[Tuple[int, int, int]]:
    """For a 3D convolution that PyTorch would run on its native CPU kernel (the rule of ``_NATIVE_LIMIT``), an
    order of the three spatial axes (the smallest last) under which it runs oneDNN; None where the rule does not
    apply (fast path off, not a float32 CPU 5D input, batch > 1, groups > 1, a 1x1x1 kernel, whose native kernel
    PyTorch prefers single-threaded on purpose, or no order that crosses the limit)."""
    if (x.ndim != 5 or x.device.type != "cpu" or x.dtype != torch.float32 or int(x.shape[0]) != 1 or groups != 1
            or all(int(k) == 1 for k in kernel_size) or reference()):
        return None
    k = [int(v) for v in kernel_size]
    if k[1] > 3 and k[2] > 3:
        return None
    n, c, sp = int(x.shape[0]), int(x.shape[1]), [int(v) for v in x.shape[2:]]
    if n * c * sp[0] * sp[1] > _NATIVE_LIMIT:
        return None
    last = min(range(3), key=lambda a: (sp[a], -a))      # the smallest axis last (ties: keep the later one)
    order = tuple(a for a in range(3) if a != last) + (last,)
    if order == (0, 1, 2) or n * c * sp[order[0]] * sp[order[1]] <= _NATIVE_LIMIT:
        return None
    return order


def _permuted(t: torch.Tensor, order) -> torch.Tensor:
    return t.permute(0, 1, *[2 + a for a in order])


def _unpermuted(t: torch.Tensor, order) -> torch.Tensor:
    inv = [order.index(a) for a in range(3)]
    return t.permute(0, 1, *[2 + a for a in inv]).contiguous()


def conv_forward(conv, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``conv._conv_forward(x, weight, bias)``; a 3D convolution that PyTorch would run on its native CPU kernel
    (:func:`_native_axes`) runs with its spatial axes permuted (input, weight, stride, padding, dilation alike: the
    same sums of the same products) so that oneDNN takes it, and the output is permuted back."""
    order = None if isinstance(conv.padding, str) or conv.padding_mode != "zeros" else \
        _native_axes(x, conv.kernel_size, conv.groups)
    if order is None:
        return conv._conv_forward(x, weight, bias)
    pick = lambda v: [v[a] for a in order]   # noqa: E731
    y = F.conv3d(_permuted(x, order), _permuted(weight, order), bias, pick(conv.stride), pick(conv.padding),
                 pick(conv.dilation), conv.groups)
    return _unpermuted(y, order)


def conv_transpose_forward(conv, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                           output_padding) -> torch.Tensor:
    """``F.conv_transpose3d`` of ``conv``'s settings with ``weight``/``bias``, with the axis permutation of
    :func:`conv_forward` where PyTorch would take its native kernel."""
    order = None if conv.padding_mode != "zeros" else _native_axes(x, conv.kernel_size, conv.groups)
    if order is None:
        return F.conv_transpose3d(x, weight, bias, conv.stride, conv.padding, output_padding, conv.groups,
                                  conv.dilation)
    pick = lambda v: [v[a] for a in order]   # noqa: E731
    y = F.conv_transpose3d(_permuted(x, order), _permuted(weight, order), bias, pick(conv.stride),
                           pick(conv.padding), pick(output_padding), conv.groups, pick(conv.dilation))
    return _unpermuted(y, order)


class FastConv3d(nn.Conv3d):
    """``nn.Conv3d`` through :func:`conv_forward` (same parameters, same state_dict keys)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_forward(self, x, self.weight, self.bias)


class FastConvTranspose3d(nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` through :func:`conv_transpose_forward` (same parameters, same state_dict keys)."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        op = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size, 3, self.dilation)
        return conv_transpose_forward(self, x, self.weight, self.bias, op)


def fast_convs(module: nn.Module) -> nn.Module:
    """Give every plain ``nn.Conv3d`` / ``nn.ConvTranspose3d`` inside ``module`` the class :class:`FastConv3d` /
    :class:`FastConvTranspose3d` (the class only: parameters, buffers and state_dict keys stay); returns ``module``."""
    for m in module.modules():
        if type(m) is nn.Conv3d:
            m.__class__ = FastConv3d
        elif type(m) is nn.ConvTranspose3d:
            m.__class__ = FastConvTranspose3d
    return module


def _dw_same(conv, x: torch.Tensor) -> bool:
    """A depth-wise convolution (one filter per channel, C -> C) of stride 1 and "same" zero padding
    ``d (k - 1) / 2`` with odd kernels, on a device of ``dw_backward_devices()`` and not under autocast: what
    :class:`_DepthwiseSame` handles (2D and 3D)."""
    c = int(x.shape[1]) if x.ndim in (4, 5) else -1
    return (not reference() and x.ndim in (4, 5) and x.ndim == conv.weight.ndim
            and x.device.type in dw_backward_devices()
            and not torch.is_autocast_enabled(x.device.type)
            and conv.groups == c == conv.out_channels and conv.in_channels == c and _same_stride1(conv))


def _dw_weight_grad(conv, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``dL/dw[c, k] = sum_n sum_p g[n, c, p] x_pad[n, c, p + d k]`` (x zero-padded by ``d (k - 1) / 2``), per batch
    element as ONE grouped convolution with the roles swapped: input ``x_pad[n]`` (1 x C x padded spatial), weight
    ``g[n]`` (C x 1 x spatial), groups C, stride d; its output is the ``k``-sized weight gradient; summed over n."""
    pad = [v for p in reversed(conv.padding) for v in (int(p), int(p))]
    stride = tuple(int(d) for d in conv.dilation)
    out = None
    for n in range(int(x.shape[0])):
        o = _CONV[x.ndim](F.pad(x[n:n + 1], pad), g[n:n + 1].transpose(0, 1), None, stride, 0, 1, int(x.shape[1]))
        out = o if out is None else out.add_(o)
    return out.reshape(conv.weight.shape)


class _DepthwiseSame(torch.autograd.Function):
    """A "same" depth-wise convolution (:func:`_dw_same`) whose forward is the no-autograd fast path and whose
    backward is computed from its definition: the input gradient is the same depth-wise convolution of the output
    gradient with the spatially flipped kernel (a stride-1 transposed convolution with symmetric padding), again on
    the fast forward path; the weight gradient is :func:`_dw_weight_grad`; the bias gradient the sum of the output
    gradient over batch and space. The same sums of the same products as PyTorch's backward, in another order.
    Once differentiable (no double backward, no forward-mode AD: nnU-Net needs neither); not under autocast (the
    reference kernels run there, :func:`_dw_same`)."""

    @staticmethod
    def forward(ctx, x, weight, bias, conv):
        ctx.conv, ctx.has_bias = conv, bias is not None
        ctx.save_for_backward(x, weight)
        with torch.no_grad():
            return _dw_kernels(conv, x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        conv, dims = ctx.conv, x.ndim - 2
        g = g.contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _dw_kernels(conv, g, weight.flip(list(range(2, 2 + dims))), None)
        if ctx.needs_input_grad[1]:
            gw = _dw_weight_grad(conv, x, g).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum([0] + list(range(2, 2 + dims)))
        return gx, gw, gb, None


def _dw_forward(conv, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """A depth-wise convolution on the fast path: with autograd a "same" one runs :class:`_DepthwiseSame` (its own
    backward), else :func:`_dw_kernels`."""
    if (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                     or (bias is not None and bias.requires_grad)) and _dw_same(conv, x)):
        return _DepthwiseSame.apply(x, weight, bias, conv)
    return _dw_kernels(conv, x, weight, bias)


def _dw_kernels(conv, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """A depth-wise convolution on the fast path: dilated ones as phases (:func:`dilated_as_phases`), the others in
    channels-last where :func:`channels_last_pays`, else as is."""
    if _phases_apply(conv, x):
        return dilated_as_phases(conv, x, weight, bias)
    if channels_last_pays(conv, x):
        fmt = torch.channels_last_3d if x.ndim == 5 else torch.channels_last
        return conv._conv_forward(x.contiguous(memory_format=fmt), weight, bias).contiguous()
    return conv._conv_forward(x, weight, bias)


class DWConv2d(nn.Conv2d):
    """``nn.Conv2d`` for depth-wise convolutions, on the fast path through :func:`_dw_forward` (same parameters,
    same state_dict keys)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _dw_forward(self, x, self.weight, self.bias)


class DWConv3d(nn.Conv3d):
    """``nn.Conv3d`` for depth-wise convolutions, on the fast path through :func:`_dw_forward`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _dw_forward(self, x, self.weight, self.bias)


def depthwise_conv_op(conv_op):
    """The depth-wise class for ``conv_op`` (``nn.Conv2d`` -> :class:`DWConv2d`, ``nn.Conv3d`` -> :class:`DWConv3d`);
    any other op is returned unchanged."""
    return {nn.Conv2d: DWConv2d, nn.Conv3d: DWConv3d}.get(conv_op, conv_op)


def foldable_bn(norm: Optional[nn.Module]) -> bool:
    """True for a BatchNorm in eval mode with running statistics (what :func:`conv_norm` folds), on the fast path."""
    return (isinstance(norm, _BatchNorm) and not norm.training and norm.track_running_stats
            and norm.running_mean is not None and not reference())


def _bn_scale_shift(norm: _BatchNorm):
    s = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        s = s * norm.weight
    shift = -norm.running_mean * s
    if norm.bias is not None:
        shift = shift + norm.bias
    return s, shift


def _dense_phases(conv: nn.Module, x: torch.Tensor) -> bool:
    """A dense (not depth-wise) dilated 3D convolution on the fast path runs as :func:`dilated_as_phases` (MoNet's
    RDDC blocks in 3D); 2D ones stay as they are."""
    return (x.ndim == 5 and isinstance(conv, nn.Conv3d) and not isinstance(conv, DWConv3d)
            and conv.groups == 1 and _phases_apply(conv, x))


def conv_norm(conv: nn.Module, norm: Optional[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """``norm(conv(x))``; a BatchNorm in eval mode is folded into the convolution (``nn.Conv{1,2,3}d``); a dense
    dilated 3D convolution runs on its phase sub-lattices (:func:`_dense_phases`)."""
    if not foldable_bn(norm) or not hasattr(conv, "_conv_forward") or hooked(conv, norm):
        if _dense_phases(conv, x) and not hooked(conv):
            y = dilated_as_phases(conv, x, conv.weight, conv.bias)
        else:
            y = conv(x)
        return y if norm is None else norm(y)
    s, shift = _bn_scale_shift(norm)
    w = conv.weight * s.reshape(-1, *([1] * (conv.weight.ndim - 1)))
    b = shift if conv.bias is None else conv.bias * s + shift
    if isinstance(conv, (DWConv2d, DWConv3d)):
        return _dw_forward(conv, x, w, b)
    if _dense_phases(conv, x):
        return dilated_as_phases(conv, x, w, b)
    return conv_forward(conv, x, w, b) if isinstance(conv, nn.Conv3d) else conv._conv_forward(x, w, b)


_CONV_T = {3: F.conv_transpose1d, 4: F.conv_transpose2d, 5: F.conv_transpose3d}


def conv_transpose_norm(conv: nn.modules.conv._ConvTransposeNd, norm: Optional[nn.Module],
                        x: torch.Tensor) -> torch.Tensor:
    """``norm(conv(x))`` for a transposed convolution (no ``output_size``); a BatchNorm in eval mode is folded
    (the transposed weight is ``(C_in, C_out / groups, k...)``: the scale acts on axis 1)."""
    if not foldable_bn(norm) or conv.groups != 1 or conv.padding_mode != "zeros" or hooked(conv, norm):
        return norm(conv(x))
    s, shift = _bn_scale_shift(norm)
    w = conv.weight * s.reshape(1, -1, *([1] * (conv.weight.ndim - 2)))
    b = shift if conv.bias is None else conv.bias * s + shift
    if x.ndim == 5:
        return conv_transpose_forward(conv, x, w, b, conv.output_padding)
    return _CONV_T[x.ndim](x, w, b, conv.stride, conv.padding, conv.output_padding, conv.groups, conv.dilation)


def _is_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.conv._ConvNd) and not isinstance(m, nn.modules.conv._ConvTransposeNd)


def run_sequence(modules: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``modules(x)``, with every convolution immediately followed by a foldable BatchNorm run as one folded
    convolution (:func:`conv_norm`)."""
    mods, i = list(modules), 0
    while i < len(mods):
        if i + 1 < len(mods) and _is_conv(mods[i]) and foldable_bn(mods[i + 1]):
            x, i = conv_norm(mods[i], mods[i + 1], x), i + 2
        else:
            x, i = mods[i](x), i + 1
    return x


class FoldingConvDropoutNormReLU(ConvDropoutNormReLU):
    """dynamic_network_architectures' ``ConvDropoutNormReLU`` whose forward folds an eval-mode BatchNorm that
    directly follows the convolution (:func:`run_sequence`); same modules, same state_dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_sequence(self.all_modules, x)

    def compute_conv_feature_map_size(self, input_size) -> int:
        return int(super().compute_conv_feature_map_size(input_size))   # a Python int, as every block of ours


def fold_units(module: nn.Module) -> nn.Module:
    """Turn every ``ConvDropoutNormReLU`` inside ``module`` into a :class:`FoldingConvDropoutNormReLU` (the class
    only: parameters, buffers and state_dict keys stay as they are); returns ``module``."""
    for m in module.modules():
        if type(m) is ConvDropoutNormReLU:
            m.__class__ = FoldingConvDropoutNormReLU
    return module
