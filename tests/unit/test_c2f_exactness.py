"""benchmarks/c2f_exactness.py as a test (issue #22, items 2 and 3): with stand-in models of known output wrapped in
nnU-Net's predictor, ``predict-c2f``'s box path equals nnU-Net's whole-volume export on every voxel at three raw
spacings (each with a non-trivial transpose and a nonzero crop), and a coarse mask of six equal fragments still
gives a box."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "c2f_exactness.py"


@pytest.fixture(scope="module")
def exactness():
    spec = importlib.util.spec_from_file_location("c2f_exactness", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_box_path_equals_whole_volume_export(exactness):
    for (spacing, tf) in exactness.CASES:
        assert list(tf) != sorted(tf)  # a real transpose
        dice, differing, rec = exactness.compare_spacing(spacing, tf)
        assert (dice, differing) == (1.0, 0), spacing
        # the box is a real crop (not the whole volume) and the organ was found
        assert rec["fallback"] is None and 0 < rec["fine_voxels_fraction"] < 0.5, rec


def test_fragmented_coarse_mask_keeps_the_largest_component(exactness):
    n, rec, notice = exactness.fragmented_coarse()
    assert n > 0 and rec["fallback"] is None and "no foreground" not in notice
    (box,) = rec["boxes"]
    assert np.prod([hi - lo for lo, hi in box]) < 0.05 * np.prod(rec["shape"])  # one blob's box, not all six
