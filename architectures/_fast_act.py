"""Fast execution paths outside the convolutions (a private module: not a family, registers nothing): ELU with an
output-based backward, and a whole 2D network in channels-last layout (MoNet's). Same function as the reference
path (``_fast_mode``) within fp32 rounding; no parameter or buffer is touched."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._fast_mode import layout_devices, reference

__all__ = ["elu", "channels_last_2d", "contiguous_outputs"]


class _ELU(torch.autograd.Function):
    """ELU (alpha = 1) with the fast forward and a backward from the output: d/dx = 1 if y > 0 else y + 1."""

    @staticmethod
    def forward(ctx, x):
        t = torch.clamp(x, max=0).exp_().sub_(1)
        y = torch.maximum(x, t, out=t)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * torch.where(y > 0, torch.ones_like(y), y + 1)


def elu(x: torch.Tensor, owned: bool = False) -> torch.Tensor:
    """ELU (alpha = 1) on the fast path. ``owned=True`` says that ``x`` is a temporary nobody else holds (the fresh
    output of a convolution or norm that no hook watches): then PyTorch's in-place ELU, whose backward is also
    computed from the output. Otherwise ``max(x, exp(min(x, 0)) - 1)`` (equal to ``x if x > 0 else exp(x) - 1``),
    with autograd through the output-based backward of :class:`_ELU`. On the reference path PyTorch's ``F.elu``
    with autograd, the formula without."""
    if reference():
        return F.elu(x, 1.0) if torch.is_grad_enabled() and x.requires_grad else \
            torch.maximum(x, torch.clamp(x, max=0).exp_().sub_(1))
    if owned:
        return F.elu(x, 1.0, inplace=True)
    if torch.is_grad_enabled() and x.requires_grad:
        return _ELU.apply(x)
    return torch.maximum(x, torch.clamp(x, max=0).exp_().sub_(1))


def channels_last_2d(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last layout where a whole 2D network runs in it on the fast path (MoNet 2d: oneDNN's
    channels-last kernels for its thin convolutions; BatchNorm, ELU, dropout, concatenation and the transposed
    convolutions keep the layout). Only on the devices of ``layout_devices()``; 3D stays contiguous."""
    if reference() or x.ndim != 4 or x.device.type not in layout_devices():
        return x
    y = x.contiguous(memory_format=torch.channels_last)
    if y is x and x.shape[1] == 1:
        # one channel (a CT): the contiguous tensor also counts as channels-last, but its channel stride (H W)
        # makes the convolution choose the contiguous layout again; the same memory with the canonical
        # channels-last strides (H W C, 1, W C, C) does not
        n, c, h, w = x.shape
        y = x.as_strided(x.shape, (h * w * c, 1, w * c, c))
    return y


def contiguous_outputs(out):
    """A network's output(s) (a tensor or a list of deep-supervision tensors) in the contiguous layout."""
    if isinstance(out, (list, tuple)):
        return type(out)(o.contiguous() for o in out)
    return out.contiguous()
