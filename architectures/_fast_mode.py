"""The one switch between the fast execution paths of the networks (``_fast``, ``_fast_act``) and the reference
path, the per-mechanism device switches, and the conditions every fast path shares (a private module: not a family,
registers nothing).

The reference path runs when the environment variable ``nnUNet_ext_reference=1`` is set, or inside
``with reference_mode():``. On the fast path three mechanisms run only on the device types their own variable lists:
the channels-last memory layout (``nnUNet_ext_layout_devices``: depth-wise convolutions, MoNet 2d), the phase
decomposition of dilated convolutions (``nnUNet_ext_phases_devices``) and the own depth-wise backward
(``nnUNet_ext_dw_backward_devices``). Each defaults to ``nnUNet_ext_channels_last_devices``, the shorthand for all
three (default ``cpu``). A module watched by a hook runs as is (:func:`hooked`).
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Tuple

from torch import nn

__all__ = ["ENV_REFERENCE", "ENV_CL_DEVICES", "ENV_LAYOUT_DEVICES", "ENV_PHASES_DEVICES", "ENV_DW_BACKWARD_DEVICES",
           "reference", "reference_mode", "cl_devices", "layout_devices", "phases_devices", "dw_backward_devices",
           "hooked"]

#: environment variable that selects the reference path everywhere ("1")
ENV_REFERENCE = "nnUNet_ext_reference"
#: environment variable, the shorthand: device types on which all three device-bound mechanisms run (default "cpu")
ENV_CL_DEVICES = "nnUNet_ext_channels_last_devices"
#: device types on which depth-wise convolutions (and MoNet 2d as a whole) switch to channels-last
ENV_LAYOUT_DEVICES = "nnUNet_ext_layout_devices"
#: device types on which dilated convolutions run as undilated ones on the input's phase sub-lattices
ENV_PHASES_DEVICES = "nnUNet_ext_phases_devices"
#: device types on which "same" depth-wise convolutions use their own backward
ENV_DW_BACKWARD_DEVICES = "nnUNet_ext_dw_backward_devices"

_state = threading.local()


def reference() -> bool:
    """True where the reference path must run (``nnUNet_ext_reference=1`` or inside :func:`reference_mode`)."""
    depth = getattr(_state, "depth", 0)
    if depth:
        return depth > 0
    return os.environ.get(ENV_REFERENCE, "0").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def reference_mode(enabled: bool = True):
    """Run the reference path (``enabled=True``) or the fast path (``False``, whatever the environment says) inside
    the block; nests, per thread."""
    old = getattr(_state, "depth", 0)
    _state.depth = (abs(old) + 1) * (1 if enabled else -1)
    try:
        yield
    finally:
        _state.depth = old


def _devices(value: str) -> Tuple[str, ...]:
    return tuple(d.strip() for d in value.split(",") if d.strip())


def cl_devices() -> Tuple[str, ...]:
    """The device types (``"cpu"``, ``"cuda"``) of the shorthand ``ENV_CL_DEVICES`` (default ``cpu``): the default of
    each of :func:`layout_devices`, :func:`phases_devices` and :func:`dw_backward_devices`."""
    return _devices(os.environ.get(ENV_CL_DEVICES, "cpu"))


def _own_or_shorthand(env: str) -> Tuple[str, ...]:
    value = os.environ.get(env)
    return cl_devices() if value is None else _devices(value)


def layout_devices() -> Tuple[str, ...]:
    """Device types on which depth-wise convolutions and MoNet 2d change to channels-last (``ENV_LAYOUT_DEVICES``,
    else the shorthand)."""
    return _own_or_shorthand(ENV_LAYOUT_DEVICES)


def phases_devices() -> Tuple[str, ...]:
    """Device types on which dilated convolutions run on phase sub-lattices (``ENV_PHASES_DEVICES``, else the
    shorthand)."""
    return _own_or_shorthand(ENV_PHASES_DEVICES)


def dw_backward_devices() -> Tuple[str, ...]:
    """Device types on which "same" depth-wise convolutions use their own backward (``ENV_DW_BACKWARD_DEVICES``,
    else the shorthand)."""
    return _own_or_shorthand(ENV_DW_BACKWARD_DEVICES)


def hooked(*modules: nn.Module) -> bool:
    """True where a forward or backward hook watches one of ``modules`` (a folded pair would skip its call, and a
    backward hook makes its output a view that must not be modified in place: run it as is)."""
    from torch.nn.modules import module as _m

    return bool(_m._global_forward_hooks or _m._global_forward_pre_hooks or _m._global_backward_hooks
                or _m._global_backward_pre_hooks) or any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks for m in modules)
