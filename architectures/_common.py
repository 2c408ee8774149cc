"""Small helpers shared by the architecture families (a private module: not a family, registers nothing)."""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np


def as_tuple(v: Union[int, Sequence[int]], dim: int) -> Tuple[int, ...]:
    """A kernel/stride/padding value as a tuple of ``dim`` ints (a scalar is repeated; a sequence is kept)."""
    return tuple(int(i) for i in v) if isinstance(v, (list, tuple)) else (int(v),) * dim


def prod(xs) -> int:
    """Number of elements of a spatial size, as a Python int (no overflow for large 3D volumes)."""
    return int(np.prod([int(x) for x in xs], dtype=np.int64))
