"""The coarse-to-fine pipeline per case (``nnunet_ext.c2f.pipeline``) on fake stages: crop to the coarse box and paste
back, the two-stage vote, the fallbacks, the coarse grid factor, atomic outputs; ``predict-c2f``'s flags."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nnunet_ext.c2f import pipeline as c2f


def _fake_stages(monkeypatch, coarse_mask, fine_label=2):
    """Stage stand-ins: the coarse stage returns ``coarse_mask``; the fine stage labels every voxel of the box it is
    given ``fine_label`` (pasted into a full-size volume) and records the box's shape; a whole-volume fine stage
    (the ``--fallback fine`` path) records the volume's shape."""
    seen = []

    def fake(predictor, image, spacing, want_preprocessed_seg=False, pre=None):
        if predictor == "coarse":
            return c2f.StageOutput(coarse_mask.copy(), coarse_mask.copy() if want_preprocessed_seg else None,
                                   {}, 0.0, pre="coarse-preprocessed")
        seen.append(("whole", image.shape[1:]))
        return c2f.StageOutput(np.full(image.shape[1:], fine_label, np.uint8), None, {}, 0.0)

    def fake_box(predictor, pre, box, shape):
        assert pre == "coarse-preprocessed"  # same plans: the coarse stage's preprocessing is reused
        seen.append(tuple(hi - lo for lo, hi in box))
        out = np.zeros(shape, np.uint8)
        out[tuple(slice(lo, hi) for lo, hi in box)] = fine_label
        return out

    monkeypatch.setattr(c2f, "run_stage", fake)
    monkeypatch.setattr(c2f, "run_fine_in_box", fake_box)
    monkeypatch.setattr(c2f, "same_preprocessing", lambda a, b: True)
    return seen


def test_predict_case_crops_to_the_coarse_box_and_pastes_back(monkeypatch):
    shape, spacing = (20, 40, 50), [2.5, 0.8, 0.8]
    image = np.zeros((1, *shape), np.float32)
    coarse = np.zeros(shape, np.uint8)
    coarse[8:12, 10:20, 20:30] = 1
    coarse[0, 0, 0] = 1  # a stray voxel: removed (< 0.2 of the foreground) before the box is taken
    seen = _fake_stages(monkeypatch, coarse)
    reader = SimpleNamespace(read_images=lambda files: (image, {"spacing": spacing}))
    seg, _, rec = c2f.predict_case("case", ["x"], "coarse", "fine", reader, "c2f", margin_mm=2.0,
                                   min_component_fraction=0.2)
    # 2 mm: 1 slice at 2.5 mm, ceil(2.5) = 3 pixels at 0.8 mm
    box = ((7, 13), (7, 23), (17, 33))
    assert rec["boxes"] == [[list(b) for b in box]] and rec["fallback"] is None
    assert seen == [(6, 16, 16)]  # the fine model saw the crop only
    expected = np.zeros(shape, np.uint8)
    expected[7:13, 7:23, 17:33] = 2  # pasted back, background outside the box
    np.testing.assert_array_equal(seg, expected)
    assert rec["fine_voxels_fraction"] == pytest.approx(6 * 16 * 16 / np.prod(shape))


def test_predict_case_two_stage_votes_over_two_boxes(monkeypatch):
    shape = (20, 40, 50)
    image = np.zeros((1, *shape), np.float32)
    coarse = np.zeros(shape, np.uint8)
    coarse[8:12, 10:20, 20:30] = 1
    seen = _fake_stages(monkeypatch, coarse, fine_label=1)
    monkeypatch.setattr(c2f, "preprocessed_box_to_raw", lambda box, pre_shape, props, tb: box)
    monkeypatch.setattr(c2f, "coarse_grid_factor", lambda pre_shape, props, tb: (1.0, 1.0, 1.0))
    reader = SimpleNamespace(read_images=lambda files: (image, {"spacing": [1.0, 1.0, 1.0]}))

    class Coarse(str):  # the coarse "predictor": equal to "coarse" for the fake, with the plans' transpose
        plans_manager = SimpleNamespace(transpose_backward=[0, 1, 2])

    seg, _, rec = c2f.predict_case("case", ["x"], Coarse("coarse"), "fine", reader, "two-stage", margin_mm=0,
                                   min_component_fraction=0, ts_margins=(2, 10))
    b1 = ((6, 14), (8, 22), (18, 32))      # coarse-grid box + 2 voxels
    b2 = ((0, 20), (0, 30), (10, 40))      # upsampled-mask box + 10 voxels, clipped
    assert rec["boxes"] == [[list(b) for b in b1], [list(b) for b in b2]]
    assert sorted(seen) == sorted([(8, 14, 14), (20, 30, 30)])
    # majority of (fine on b1, fine on b2, coarse mask): foreground where at least two agree = b1 (inside b2)
    expected = np.zeros(shape, np.uint8)
    expected[6:14, 8:22, 18:32] = 1
    np.testing.assert_array_equal(seg, expected)


@pytest.mark.parametrize("fallback", ["coarse", "fine"])
def test_predict_case_no_coarse_foreground_fallback(monkeypatch, capsys, fallback):
    """Default: the coarse result (background) is the output, the fine model does not run; --fallback fine runs it
    on the whole volume. Either way the notice names the case and the record says which."""
    shape = (10, 20, 30)
    image = np.zeros((1, *shape), np.float32)
    seen = _fake_stages(monkeypatch, np.zeros(shape, np.uint8), fine_label=1)
    reader = SimpleNamespace(read_images=lambda files: (image, {"spacing": [1.0, 1.0, 1.0]}))
    seg, _, rec = c2f.predict_case("case_042", ["x"], "coarse", "fine", reader, "c2f", margin_mm=5,
                                   min_component_fraction=0.2, fallback=fallback)
    out = capsys.readouterr().out
    assert "case_042: the coarse model found no foreground" in out and rec["fallback"] == fallback
    assert rec["boxes"] is None
    if fallback == "coarse":
        assert seen == [] and not seg.any() and rec["fine_voxels_fraction"] == 0.0
    else:
        assert seen == [("whole", shape)] and (seg == 1).all() and rec["fine_voxels_fraction"] == 1.0


def test_coarse_grid_factor_is_the_actual_one():
    # coarse grid (transposed axes) 10 x 20 x 25 over a cropped raw region of 30 x 60 x 100 (axes 2, 0, 1 of raw)
    props = {"shape_after_cropping_and_before_resampling": (30, 60, 100)}
    assert c2f.coarse_grid_factor((10, 20, 25), props, transpose_backward=(0, 1, 2)) == (3.0, 3.0, 4.0)
    assert c2f.coarse_grid_factor((10, 20, 25), props, transpose_backward=(1, 2, 0)) == (3.0, 4.0, 3.0)


def test_two_stage_box1_margin_uses_the_actual_factor(monkeypatch):
    """When the coarse grid lost the foreground, box 1 = upsampled box + 2 coarse voxels scaled by the coarse
    configuration's factor (here 3 on every axis, not a fixed 4)."""
    shape = (20, 40, 50)
    coarse = np.zeros(shape, np.uint8)
    coarse[8:12, 10:20, 20:30] = 1
    seen = _fake_stages(monkeypatch, coarse, fine_label=1)

    def fake(predictor, image, spacing, want_preprocessed_seg=False, pre=None):
        return c2f.StageOutput(coarse.copy(), np.zeros((7, 13, 17), np.uint8), {}, 0.0, pre="coarse-preprocessed")

    monkeypatch.setattr(c2f, "run_stage", fake)
    monkeypatch.setattr(c2f, "coarse_grid_factor", lambda pre_shape, props, tb: (3.0, 3.0, 3.0))
    reader = SimpleNamespace(read_images=lambda files: (np.zeros((1, *shape), np.float32), {"spacing": [1, 1, 1]}))
    _, _, rec = c2f.predict_case("c", ["x"], SimpleNamespace(plans_manager=SimpleNamespace(transpose_backward=[0, 1, 2])),
                                 "fine", reader, "two-stage", margin_mm=0, min_component_fraction=0,
                                 ts_margins=(2, 10))
    assert rec["boxes"][0] == [[2, 18], [4, 26], [14, 36]]  # 2 coarse voxels = 6 raw voxels
    assert rec["coarse_factor"] == [3.0, 3.0, 3.0] and len(seen) == 2


class _Writer:
    def write_seg(self, seg, path, props):
        Path(path).write_bytes(seg.tobytes())


def test_run_cases_atomic_output_failure_and_continue(monkeypatch, tmp_path):
    """Each case is renamed into place when complete; a failing case stops the run with one line naming it and
    keeps the finished ones; --continue_prediction skips them."""
    calls = []

    def fake_case(case, files, *a, **kw):
        calls.append(case)
        if case == "b" and len(calls) < 3:
            raise RuntimeError("CUDA out of memory\nmore lines")
        return np.ones((2, 2), np.uint8), {}, {"total_s": 1.0, "coarse_s": 0.5, "fine_s": 0.5, "fallback": None,
                                               "boxes": [[[0, 2], [0, 2]]], "fine_voxels_fraction": 1.0}

    monkeypatch.setattr(c2f, "predict_case", fake_case)
    cases = {"a": ["a_0000.nii.gz"], "b": ["b_0000.nii.gz"], "c": ["c_0000.nii.gz"]}
    out = tmp_path / "out"
    args = (None, None, _Writer(), ".nii.gz")
    rest = ("c2f", 10.0, 0.2, (2, 10), "coarse")
    with pytest.raises(c2f.UserError) as e:
        c2f.run_cases(cases, out, *args, {"cases": {}}, *rest)
    msg = str(e.value)
    assert "case b failed" in msg and "CUDA out of memory" in msg and "\n" not in msg and "1 case(s)" in msg
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", c2f.TIMES_FILE]  # no partial file, a kept
    assert list(json.loads((out / c2f.TIMES_FILE).read_text())["cases"]) == ["a"]
    rec = c2f.run_cases(cases, out, *args, {"cases": {}}, *rest, continue_prediction=True)
    assert calls == ["a", "b", "b", "c"]  # a skipped on the second run
    assert sorted(rec["cases"]) == ["a", "b", "c"]
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "b.nii.gz", "c.nii.gz", c2f.TIMES_FILE]



def test_predict_c2f_flags_use_nnunet_spellings():
    from nnunet_ext.cli import build_parser

    base = ["predict-c2f", "-i", "in", "-o", "out", "-d", "1", "--coarse", "A:3d", "--fine", "B:3d"]
    a = build_parser("predict-c2f").parse_args(base)
    assert (a.chk, a.device, a.disable_tta, a.step_size, a.fallback, a.continue_prediction) == \
        ("checkpoint_final.pth", "auto", False, 0.5, "coarse", False)
    a = build_parser("predict-c2f").parse_args(base + ["-chk", "checkpoint_best.pth", "-device", "cpu", "--disable_tta",
                                          "-step_size", "0.3", "--continue_prediction", "--fallback", "fine",
                                          "-f", "0", "1"])
    assert (a.chk, a.device, a.disable_tta, a.step_size, a.fallback, a.continue_prediction, a.f) == \
        ("checkpoint_best.pth", "cpu", True, 0.3, "fine", True, ["0", "1"])
    old = build_parser("predict-c2f").parse_args(base + ["--chk", "x.pth", "--device", "cpu", "--disable-tta", "--fine-step", "0.4"])
    assert (old.chk, old.device, old.disable_tta, old.step_size) == ("x.pth", "cpu", True, 0.4)

