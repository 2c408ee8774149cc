"""Small helpers shared by the architecture families (a private module: not a family, registers nothing)."""
from __future__ import annotations

from typing import Any, List, Sequence, Tuple, Union

import numpy as np

#: the singular of a per-stage list's name, as the messages of :func:`check_stage_list` say it
_SINGULAR = {"kernel_sizes": "kernel size", "strides": "stride"}


def as_tuple(v: Union[int, Sequence[int]], dim: int) -> Tuple[int, ...]:
    """A kernel/stride/padding value as a tuple of ``dim`` ints (a scalar is repeated; a sequence is kept)."""
    return tuple(int(i) for i in v) if isinstance(v, (list, tuple)) else (int(v),) * dim


def prod(xs) -> int:
    """Number of elements of a spatial size, as a Python int (no overflow for large 3D volumes)."""
    return int(np.prod([int(x) for x in xs], dtype=np.int64))


def per_stage(what: str, values: Any, n_stages: int, *, owner: str) -> list:
    """``values`` as a list of one entry per stage: a scalar (an int) is repeated ``n_stages`` times, a sequence
    must have ``n_stages`` entries (``ValueError`` ``"<owner>: <what> has N entries, n_stages is M"``)."""
    if isinstance(values, (int, np.integer)):
        return [int(values)] * n_stages
    values = list(values)
    if len(values) != n_stages:
        raise ValueError(f"{owner}: {what} has {len(values)} entries, n_stages is {n_stages}")
    return values


def check_stage_list(what: str, values: Any, n_stages: int, dim: int, *, owner: str, odd: bool = False,
                     axis_sep: str = ", ") -> List[Tuple[int, ...]]:
    """Per-stage ``kernel_sizes`` or ``strides`` of a ``dim``-D network, validated: one ``dim``-tuple of ints per
    stage. ``values`` is an int (every stage and axis) or one entry per stage, each an int (every axis) or one value
    per axis. ``ValueError`` naming ``owner``, the stage and the axis for: a wrong number of stages
    (:func:`per_stage`), of axes (``"<owner>: stage s: stride [2, 2] has 2 axes, the conv op is 3D"``), a value
    that is not an int >= 1 (``"<owner>: stage s, axis a: stride 0 must be an int >= 1"``) or, with ``odd``
    (kernels with "same" padding), an even one (``"... kernel size 2 must be odd and >= 1"``). ``axis_sep`` is
    what separates stage and axis in the messages (``", "``; ResDSN's and DLKUNet's messages have ``" "``)."""
    name = _SINGULAR.get(what, what)
    out = []
    for s, v in enumerate(per_stage(what, values, n_stages, owner=owner)):
        t = list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v] * dim
        if len(t) != dim:
            raise ValueError(f"{owner}: stage {s}: {name} {t} has {len(t)} axes, the conv op is {dim}D")
        for a, x in enumerate(t):
            if int(x) != x or x < 1 or (odd and x % 2 == 0):
                raise ValueError(f"{owner}: stage {s}{axis_sep}axis {a}: {name} {x} must be "
                                 f"{'odd and >= 1' if odd else 'an int >= 1'}")
        out.append(tuple(int(x) for x in t))
    return out
