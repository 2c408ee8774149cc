"""The one switch between the fast execution paths of the networks (``_fast``, ``_fast_act``) and the reference
path, and the conditions every fast path shares (a private module: not a family, registers nothing).

The reference path runs when the environment variable ``nnUNet_ext_reference=1`` is set, or inside
``with reference_mode():``. Layout changes to channels-last happen only on the device types of
``nnUNet_ext_channels_last_devices`` (default ``cpu``). A module watched by a hook runs as is (:func:`hooked`).
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Tuple

from torch import nn

__all__ = ["ENV_REFERENCE", "ENV_CL_DEVICES", "reference", "reference_mode", "cl_devices", "hooked"]

#: environment variable that selects the reference path everywhere ("1")
ENV_REFERENCE = "nnUNet_ext_reference"
#: environment variable: device types on which depth-wise convolutions switch to channels-last (default "cpu")
ENV_CL_DEVICES = "nnUNet_ext_channels_last_devices"

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


def cl_devices() -> Tuple[str, ...]:
    """The device types (``"cpu"``, ``"cuda"``) on which the fast paths change layouts (``ENV_CL_DEVICES``)."""
    return tuple(d.strip() for d in os.environ.get(ENV_CL_DEVICES, "cpu").split(",") if d.strip())


def hooked(*modules: nn.Module) -> bool:
    """True where a forward or backward hook watches one of ``modules`` (a folded pair would skip its call, and a
    backward hook makes its output a view that must not be modified in place: run it as is)."""
    from torch.nn.modules import module as _m

    return bool(_m._global_forward_hooks or _m._global_forward_pre_hooks or _m._global_backward_hooks
                or _m._global_backward_pre_hooks) or any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks for m in modules)
