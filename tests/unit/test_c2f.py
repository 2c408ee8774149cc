"""Coarse-to-fine: box arithmetic, fine-stage patch sampling, centre loss, ``predict-c2f`` end to end and bad input,
``make-coarse-config``."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import assert_predictions_match_inputs, run, spec_of, train
from background import job

import nnunet_ext
from nnunet_ext.c2f import pipeline as c2f
from nnunet_ext.trainers import c2f as tc2f
from nnunet_ext.trainers.c2f import (FgBoxCroppedDataset, bbox_with_margin_mm, expand_bbox, foreground_bbox,
                                     margin_in_voxels, scale_bbox)


# ------------------------------------------------------------------------------------------------ box arithmetic
def test_foreground_bbox():
    m = np.zeros((5, 6, 7), bool)
    assert foreground_bbox(m) is None
    m[1, 2, 3] = m[3, 4, 3] = True
    assert foreground_bbox(m) == ((1, 4), (2, 5), (3, 4))
    m[:] = True
    assert foreground_bbox(m) == ((0, 5), (0, 6), (0, 7))


def test_margin_in_voxels_anisotropic():
    # 10 mm with 2.5 mm slices and 0.8 mm pixels: 4 slices, ceil(12.5) = 13 pixels
    assert margin_in_voxels(10, (2.5, 0.8, 0.8)) == (4, 13, 13)
    # exact multiples do not round up (float noise tolerated)
    assert margin_in_voxels(5, (2.5, 0.5, 1 / 3)) == (2, 10, 15)
    assert margin_in_voxels(0, (2.5, 0.8, 0.8)) == (0, 0, 0)
    assert margin_in_voxels((5, 1, 0), (2.5, 0.8, 0.8)) == (2, 2, 0)
    with pytest.raises(ValueError):
        margin_in_voxels(-1, (1, 1, 1))
    with pytest.raises(ValueError):
        margin_in_voxels(1, (1, 0, 1))
    with pytest.raises(ValueError):
        margin_in_voxels((1, 1), (1, 1, 1))


def test_expand_bbox_clips_at_borders():
    box = ((1, 3), (5, 9), (0, 2))
    assert expand_bbox(box, (2, 2, 2), (10, 10, 10)) == ((0, 5), (3, 10), (0, 4))
    assert expand_bbox(box, (0, 0, 0), (10, 10, 10)) == box
    assert expand_bbox(((0, 10),), (100,), (10,)) == ((0, 10),)


def test_bbox_with_margin_mm_anisotropic():
    m = np.zeros((20, 100, 100), bool)
    m[10, 50:52, 40] = True
    # 5 mm: 2 slices at 2.5 mm, 7 pixels at 0.75 mm (5 / 0.75 = 6.67), 10 pixels at 0.5 mm
    assert bbox_with_margin_mm(m, 5.0, (2.5, 0.75, 0.5)) == ((8, 13), (43, 59), (30, 51))
    # clipped at the volume borders
    m[:] = False
    m[0, 0, 99] = True
    assert bbox_with_margin_mm(m, 5.0, (2.5, 0.75, 0.5)) == ((0, 3), (0, 8), (89, 100))
    assert bbox_with_margin_mm(np.zeros((3, 3, 3), bool), 5.0, (1, 1, 1)) is None


def test_scale_bbox_rounds_outwards():
    # a box of a 4x downsampled grid onto the full grid: multiplied by R
    assert scale_bbox(((1, 3), (0, 2)), (10, 8), (40, 32)) == ((4, 12), (0, 8))
    # uneven ratio (shape 10 -> 25): covers at least the physical extent, clipped
    assert scale_bbox(((1, 3), (9, 10)), (10, 10), (25, 25)) == ((2, 8), (22, 25))


def test_preprocessed_box_to_raw_with_crop_and_transpose():
    props = {"shape_after_cropping_and_before_resampling": (20, 40, 60),  # transposed axes
             "bbox_used_for_cropping": [[2, 22], [5, 45], [0, 60]]}
    box = ((1, 2), (0, 5), (10, 30))  # on a (10, 20, 30) preprocessed grid
    raw = c2f.preprocessed_box_to_raw(box, (10, 20, 30), props, transpose_backward=(2, 0, 1))
    # scaled: (2, 4), (0, 10), (20, 60); shifted by the crop: (4, 6), (5, 15), (20, 60); transposed back
    assert raw == ((20, 60), (4, 6), (5, 15))


def test_remove_small_components_paste_and_vote():
    seg = np.zeros((1, 20, 20), np.uint8)
    seg[0, 0:5, 0:5] = 1   # 25 voxels
    seg[0, 10:12, 10:12] = 2  # 4 voxels: 4 / 29 < 0.2
    seg[0, 15:18, 15:18] = 1  # 9 voxels: 9 / 38 > 0.2
    out = c2f.remove_small_components(seg, 0.2)
    assert out[0, 10:12, 10:12].sum() == 0 and out[0, 0:5, 0:5].all() and out[0, 15:18, 15:18].all()
    assert c2f.remove_small_components(seg, 0) is seg
    assert (c2f.remove_small_components(np.zeros_like(seg), 0.2) == 0).all()

    full = c2f.paste(np.ones((2, 3), np.uint8), ((1, 3), (2, 5)), (4, 6))
    assert full.sum() == 6 and full[1:3, 2:5].all()
    with pytest.raises(ValueError):
        c2f.paste(np.ones((2, 2), np.uint8), ((1, 3), (2, 5)), (4, 6))

    f1, f2, c = np.array([1, 1, 0, 2, 1]), np.array([1, 0, 2, 2, 2]), np.array([0, 0, 2, 1, 0])
    assert c2f.majority_vote(f1, f2, c).tolist() == [1, 0, 2, 2, 1]


# ------------------------------------------------------------------------------------------------ trainers by name
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


def test_fine_and_centre_suffixes_found_by_nnunet(monkeypatch):
    monkeypatch.setenv("nnUNet_extTrainer", nnunet_ext.EXT_TRAINER_DIR)
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    cls = recursive_find_trainer_class_by_name("nnUNetTrainerPlainUNet_fine_1epoch_4iters")
    assert issubclass(cls, tc2f.FineStageMixin)
    assert cls.fine_margin_mm == tc2f.DEFAULT_FINE_MARGIN_MM and cls.fine_margin_vox is None
    assert cls.merged_hparams() == {"num_epochs": 1, "num_iterations_per_epoch": 4, "num_val_iterations_per_epoch": 1}
    cls = recursive_find_trainer_class_by_name("nnUNetTrainerPlainUNet_fine7p5mm_centre20pct")
    assert cls.fine_margin_mm == 7.5 and issubclass(cls, tc2f.CentreLossMixin) and cls.centre_epoch_fraction == 0.2
    cls = recursive_find_trainer_class_by_name("nnUNetTrainerPlainUNet_fine10vox")
    assert cls.fine_margin_vox == 10 and cls.fine_margin_mm is None
    explicit = recursive_find_trainer_class_by_name("nnUNetTrainerPlainUNetFine")
    assert issubclass(explicit, tc2f.FineStageMixin)


def test_resdsn_and_two_stage_fine_trainers():
    from nnunet_ext import trainers

    names = trainers.exported_trainers()
    assert issubclass(names["nnUNetTrainerResDSNFine"], names["nnUNetTrainerResDSN"])
    assert issubclass(names["nnUNetTrainerResDSNFine"], tc2f.FineStageMixin)
    assert issubclass(names["nnUNetTrainerTwoStageUNetFine"], names["nnUNetTrainerTwoStageUNet"])
    assert names["nnUNetTrainerTwoStageUNetFine"].fine_margin_vox == tc2f.TWO_STAGE_FINE_MARGIN_VOX


# ------------------------------------------------------------------------------------------------ fine-stage sampling
class _FakeDataset:
    """Stand-in for nnU-Net's dataset classes: one synthetic case, values 1 inside the expected crop, -5 outside."""

    def __init__(self, shape=(20, 60, 60), fg=((8, 11), (25, 31), (30, 34)), with_fg=True):
        self.identifiers = ["case"]
        self.shape, self.fg = shape, fg
        self.seg = np.zeros((1, *shape), np.int8)
        if with_fg:
            self.seg[(0, *[slice(a, b) for a, b in fg])] = 1
            self.seg[0, fg[0][0], fg[1][0], fg[2][0]] = 2
        locs = np.argwhere(self.seg > 0)
        self.props = {"spacing": [2.5, 0.8, 0.8],
                      "class_locations": {1: locs[self.seg[tuple(locs.T)] == 1], 2: locs[self.seg[tuple(locs.T)] == 2]}}

    def load_case(self, identifier):
        return np.zeros((1, *self.shape), np.float32), self.seg, None, self.props


def test_fg_box_cropped_dataset_crops_and_shifts():
    ds = _FakeDataset()
    w = FgBoxCroppedDataset(ds, margin_mm=5.0, spacing=(2.5, 0.8, 0.8))
    data, seg, _, props = w.load_case("case")
    # margin: 2 slices, 7 pixels (5 / 0.8 = 6.25)
    assert props["c2f_fg_box"] == ((6, 13), (18, 38), (23, 41))
    assert data.shape == (1, 7, 20, 18) and seg.shape == data.shape
    assert seg.sum() == ds.seg.sum()  # all foreground kept
    for k, v in props["class_locations"].items():
        assert len(v) == len(ds.props["class_locations"][k])
        assert np.all(seg[tuple(v.T)] == k)  # shifted locations point at the same voxels
    assert ds.props["class_locations"][1].shape == (len(ds.props["class_locations"][1]), 4)  # original untouched
    wv = FgBoxCroppedDataset(ds, margin_vox=3)
    assert wv.load_case("case")[3]["c2f_fg_box"] == ((5, 14), (22, 34), (27, 37))
    # no foreground: the case stays whole
    empty = FgBoxCroppedDataset(_FakeDataset(with_fg=False), margin_vox=3)
    assert empty.load_case("case")[0].shape == (1, 20, 60, 60)
    with pytest.raises(ValueError):
        FgBoxCroppedDataset(ds, margin_mm=1.0, margin_vox=1)


def test_nnunet_dataloader_samples_only_inside_the_box():
    """nnU-Net's own data loader on the wrapped dataset: every patch voxel is inside the box or padding."""
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    class Marked(_FakeDataset):
        def load_case(self, identifier):
            data, seg, prev, props = super().load_case(identifier)
            data = np.full_like(data, -5.0)  # outside the box + margin
            data[(0, *[slice(lo, hi) for lo, hi in ((6, 13), (18, 38), (23, 41))])] = 1.0
            return data, seg, prev, props

    ds = Marked()
    w = FgBoxCroppedDataset(ds, margin_mm=5.0, spacing=(2.5, 0.8, 0.8))
    lm = LabelManager({"background": 0, "a": 1, "b": 2}, regions_class_order=None)
    np.random.seed(0)
    dl = nnUNetDataLoader(w, 4, (10, 24, 24), (8, 16, 16), lm, oversample_foreground_percent=0.5)
    seen_inside = 0
    for _ in range(30):
        batch = dl.generate_train_batch()
        d = batch["data"].numpy()
        assert not np.any(d == -5.0), "a patch reached outside the ground-truth box + margin"
        seen_inside += int((d == 1.0).sum())
        assert set(np.unique(batch["target"].numpy())) <= {-1, 0, 1, 2}
    assert seen_inside > 0
    # and without the wrapper the same loader does leave the box (the test can fail)
    dl_plain = nnUNetDataLoader(ds, 4, (10, 24, 24), (8, 16, 16), lm, oversample_foreground_percent=0.0)
    assert any(np.any(dl_plain.generate_train_batch()["data"].numpy() == -5.0) for _ in range(10))


# ------------------------------------------------------------------------------------------------ centre loss
def test_slice_centres_and_centre_loss():
    m = torch.zeros(1, 2, 5, 7)
    m[0, 0, 1, 2] = 1
    m[0, 0, 3, 4] = 1
    c, mass = tc2f.slice_centres(m)
    assert torch.allclose(c[0, 0], torch.tensor([2.0, 3.0])) and mass[0, 1] == 0

    target = torch.zeros(1, 1, 2, 8, 8, dtype=torch.long)
    target[0, 0, 0, 2:4, 2:4] = 1
    perfect = torch.full((1, 3, 2, 8, 8), -20.0)
    perfect[:, 0] = 20.0
    perfect[0, 0, 0, 2:4, 2:4] = -20.0
    perfect[0, 1, 0, 2:4, 2:4] = 20.0
    assert tc2f.centre_loss(perfect, target).item() < 1e-3
    shifted = torch.roll(perfect, shifts=3, dims=-1).requires_grad_(True)
    loss = tc2f.centre_loss(shifted, target)
    assert abs(loss.item() - 3.0) < 1e-2  # the centre moved by 3 pixels in the only labelled slice
    loss.backward()
    assert shifted.grad is not None and shifted.grad.abs().sum() > 0


def test_centre_gamma_schedule_and_wrapper():
    t = SimpleNamespace(centre_gamma=1e-3, centre_epoch_fraction=0.05, num_epochs=1000)
    g = lambda e: tc2f.CentreLossMixin.centre_gamma_at(t, e)  # noqa: E731
    assert g(0) == 1e-3 and g(49) == 1e-3 and g(50) == 0.0
    t.num_epochs = 5  # short schedules keep the term for at least one epoch
    assert g(0) == 1e-3 and g(1) == 0.0

    base = lambda o, tg: torch.tensor(1.0)  # noqa: E731
    w = tc2f.CentreLossWrapper(base, 0.5, regions=False, ignore_label=None)
    target = torch.zeros(1, 1, 1, 8, 8, dtype=torch.long)
    target[0, 0, 0, 0, 0] = 1
    out = torch.zeros(1, 2, 1, 8, 8)
    out[:, 1, :, 7, 7] = 30
    assert w([out], [target]).item() > 1.0
    w.gamma = 0.0
    assert w([out], [target]).item() == 1.0


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


# ------------------------------------------------------------------------------------------------ fine-stage intensities
def _zscore_predictor(ds, threshold=None, spacing_factor=1.0):
    """A predictor-like object with the dataset's 3d_fullres plans switched to ZScore normalisation (a non-CT
    channel); with ``threshold``, its "network" labels 1 where the normalised intensity exceeds it."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = json.loads(ds.plans_file.read_text())
    conf = plans["configurations"]["3d_fullres"]
    conf.update(normalization_schemes=["ZScoreNormalization"], use_mask_for_norm=[False],
                spacing=[s * f for s, f in zip(conf["spacing"], (1.0, spacing_factor, spacing_factor))])
    pm = PlansManager(plans)
    dj = json.loads((ds.dataset_folder / "dataset.json").read_text())

    def logits(x):  # background 0, label 1 = 20 * (x - threshold), label 2 never
        x = x[0].float()
        return torch.stack([torch.zeros_like(x), 20 * (x - threshold), torch.full_like(x, -100.0)])

    return SimpleNamespace(plans_manager=pm, configuration_manager=pm.get_configuration("3d_fullres"),
                           dataset_json=dj, label_manager=pm.get_label_manager(dj),
                           predict_logits_from_preprocessed_data=logits)


def _training_case(ds):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    case = sorted(p.name[: -len("_0000.nii.gz")] for p in (ds.dataset_folder / "imagesTr").glob("*_0000.nii.gz"))[0]
    image, props = SimpleITKIO().read_images([str(ds.dataset_folder / "imagesTr" / f"{case}_0000.nii.gz")])
    seg, _ = SimpleITKIO().read_seg(str(ds.dataset_folder / "labelsTr" / f"{case}.nii.gz"))
    return image, seg, props


def test_fine_stage_sees_training_time_intensities_zscore(nnunet_dataset):
    """ZScore channel: the fine trainer's crop of nnU-Net's preprocessed case (FgBoxCroppedDataset) and
    predict-c2f's inference-time crop of the same box agree; preprocessing the raw crop (the old way) does not."""
    pred = _zscore_predictor(nnunet_dataset)
    pm, cm = pred.plans_manager, pred.configuration_manager
    image, seg, props = _training_case(nnunet_dataset)
    # training time: nnU-Net's preprocessing of the whole case, cropped by the fine trainer's dataset wrapper
    data, seg_pre, p_pre = cm.preprocessor_class(verbose=False).run_case_npy(
        image, seg, dict(props), pm, cm, pred.dataset_json)
    fake = SimpleNamespace(identifiers=["c"], load_case=lambda i: (data, seg_pre, None, {"class_locations": {}}))
    wrapped = FgBoxCroppedDataset(fake, margin_mm=10.0, spacing=cm.spacing, transpose_forward=pm.transpose_forward)
    train_crop, train_seg, _, tprops = wrapped.load_case("c")
    organ = train_seg[0] > 0
    # inference time: the same box in raw coordinates, mapped back the way predict-c2f maps the coarse box
    pre = c2f.preprocess(pred, image, props["spacing"])
    raw_box = c2f.preprocessed_box_to_raw(tprops["c2f_fg_box"], pre.data.shape[1:], pre.props,
                                          pm.transpose_backward)
    _, bp = c2f.raw_box_to_preprocessed(raw_box, pre.props, pre.data.shape[1:], pm.transpose_forward)
    assert bp == tprops["c2f_fg_box"]
    infer_crop = pre.data[(slice(None), *tc2f.box_slices(bp))]
    np.testing.assert_allclose(infer_crop, train_crop, atol=1e-5)
    train_mean = float(train_crop[0][organ].mean())
    # the old way: nnU-Net's preprocessing of the raw crop normalises with the crop's own statistics
    crop_sl = (slice(None), *tc2f.box_slices(raw_box))
    old, old_seg, _ = cm.preprocessor_class(verbose=False).run_case_npy(
        np.ascontiguousarray(image[crop_sl]), np.ascontiguousarray(seg[crop_sl]), {"spacing": props["spacing"]},
        pm, cm, pred.dataset_json)
    old_mean = float(old[0][old_seg[0] > 0].mean())
    assert abs(old_mean - train_mean) > 0.5, (old_mean, train_mean)


@pytest.mark.parametrize("spacing_factor", [1.0, 1.3])
def test_run_fine_in_box_matches_whole_volume_prediction_inside_the_box(nnunet_dataset, spacing_factor):
    """The crop -> predict -> resample -> paste path gives, inside the box, what the same (pointwise) model gives
    over the whole volume with nnU-Net's export, and nothing outside the box."""
    pred0 = _zscore_predictor(nnunet_dataset, spacing_factor=spacing_factor)
    image, seg, props = _training_case(nnunet_dataset)
    pre = c2f.preprocess(pred0, image, props["spacing"])
    pred = _zscore_predictor(nnunet_dataset, float(np.percentile(pre.data[0], 97)), spacing_factor)
    whole = c2f.run_stage(pred, image, props["spacing"], pre=pre).seg
    box = tc2f.bbox_with_margin_mm(seg[0] > 0, 10.0, props["spacing"])
    shape = image.shape[1:]
    inbox = c2f.run_fine_in_box(pred, pre, box, shape)
    assert inbox.shape == tuple(shape) and inbox.dtype == np.uint8
    inside = np.zeros(shape, bool)
    inside[tc2f.box_slices(box)] = True
    assert not inbox[~inside].any() and inbox[inside].any()
    a, b = inbox[inside] > 0, whole[inside] > 0
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    # same grid: identical; resampled (crop edges, offset rounded to the raw grid): a noisy speckle mask still agrees
    assert dice > (0.999 if spacing_factor == 1.0 else 0.95), dice
    assert whole[~inside].any()  # the pointwise model does find things outside the box: the clearing is real


# ------------------------------------------------------------------------------------------------ end to end
def _c2f_cmd(ds, out, coarse, fine, *extra):
    return ["nnunet-ext", "predict-c2f", "-i", str(ds.images_ts), "-o", str(out), "-d", str(ds.dataset_id),
            "--coarse", coarse, "--fine", fine, "-f", "0", "-device", "cpu", "--disable_tta", *extra]


@job("nnunet_dataset", "plain_unet_3d", "c2f_fine_3d", cost=16)
def c2f_e2e_run(ds, coarse_fold, fine_fold, tmp):
    """``predict-c2f`` of the test images with the trained pair, whole-volume fallback."""
    out = tmp / "pred"
    proc = run(_c2f_cmd(ds, out, spec_of(coarse_fold), spec_of(fine_fold), "--coarse-step", "0.9", "-step_size",
                        "0.5", "--fallback", "fine"), ds.env)
    return SimpleNamespace(out=out, proc=proc, tmp=tmp)


def test_predict_c2f_end_to_end(nnunet_dataset, c2f_e2e_run):
    ds, out, proc = nnunet_dataset, c2f_e2e_run.out, c2f_e2e_run.proc
    assert_predictions_match_inputs(out, ds.images_ts)
    times = json.loads((out / c2f.TIMES_FILE).read_text())
    cases = sorted(p.name[: -len("_0000.nii.gz")] for p in ds.images_ts.glob("*_0000.nii.gz"))
    assert sorted(times["cases"]) == cases
    for case, rec in times["cases"].items():
        assert rec["coarse_s"] > 0 and rec["fine_s"] > 0
        assert abs(rec["total_s"] - rec["coarse_s"] - rec["fine_s"]) < 1e-6
        assert f"{case}: coarse " in proc.stdout
        # a 1-epoch model may find no foreground: either path is fine, but it must be the one reported
        notice = f"{case}: the coarse model found no foreground" in proc.stdout
        assert notice == (rec["fallback"] == "fine")
        if rec["fallback"]:
            assert rec["boxes"] is None and rec["fine_voxels_fraction"] == 1.0
        else:
            (box,) = rec["boxes"]
            assert all(0 <= lo < hi <= n for (lo, hi), n in zip(box, rec["shape"]))
            # everything outside the box is background
            import SimpleITK as sitk
            seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz")))
            inside = np.zeros(seg.shape, bool)
            inside[tuple(slice(lo, hi) for lo, hi in box)] = True
            assert not np.any(seg[~inside])
    assert not [p for p in c2f_e2e_run.tmp.iterdir() if p.name.startswith(".pred")]  # temp folder gone


_ORACLE_TRAINERS = '''
import torch
from torch import nn
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class ThresholdNet(nn.Module):
    """Label 1 where the (normalised) intensity exceeds ``threshold``: a "model" whose output is known."""

    def __init__(self, threshold, num_classes):
        super().__init__()
        self.threshold, self.num_classes = threshold, num_classes

    def forward(self, x):
        fg = 20 * (x[:, :1] - self.threshold)
        rest = torch.full_like(fg, -100.0).repeat(1, self.num_classes - 2, 1, 1, 1)
        return torch.cat([torch.zeros_like(fg), fg, rest], 1)


class nnUNetTrainerC2FTestOracleHigh(nnUNetTrainer):
    threshold = 1.0

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision=True):
        return ThresholdNet(cls.threshold, num_output_channels)


class nnUNetTrainerC2FTestOracleLow(nnUNetTrainerC2FTestOracleHigh):
    threshold = -1.0
'''


@job("nnunet_dataset", cost=23)
def oracle_pair(nnunet_dataset, base):
    """Two "trained models" with known outputs (no training): label 1 where the normalised intensity is > 1
    (coarse, High) or > -1 (fine, Low), and test images on which High finds exactly the organ while Low also finds a
    decoy block of the same size far from it: the fine model run outside the box would put the decoy in the output."""
    import SimpleITK as sitk
    from scipy import ndimage

    ds = nnunet_dataset
    (base / "trainers").mkdir()
    (base / "trainers" / "c2f_oracle_trainers.py").write_text(_ORACLE_TRAINERS)
    env = {**ds.env, "nnUNet_extTrainer": nnunet_ext.EXT_TRAINER_DIR + os.pathsep + str(base / "trainers")}
    plans = json.loads(ds.plans_file.read_text())
    ip = plans["foreground_intensity_properties_per_channel"]["0"]
    for name in ("nnUNetTrainerC2FTestOracleHigh", "nnUNetTrainerC2FTestOracleLow"):
        folder = ds.results / ds.dataset_folder.name / f"{name}__nnUNetPlans__3d_fullres"
        (folder / "fold_0").mkdir(parents=True, exist_ok=True)
        shutil.copy(ds.plans_file, folder / "plans.json")
        shutil.copy(ds.dataset_folder / "dataset.json", folder / "dataset.json")
        torch.save({"network_weights": {}, "trainer_name": name, "init_args": {"configuration": "3d_fullres"},
                    "inference_allowed_mirroring_axes": None}, folder / "fold_0" / "checkpoint_final.pth")
    images, organs = base / "images", {}
    images.mkdir()
    for img_path in sorted(ds.images_ts.glob("*_0000.nii.gz")):
        case = img_path.name[: -len("_0000.nii.gz")]
        img = sitk.ReadImage(str(img_path))
        organ = sitk.GetArrayFromImage(sitk.ReadImage(str(ds.labels_ts / f"{case}.nii.gz"))) > 0
        arr = np.full(organ.shape, -1000.0, np.float32)  # clipped to the 0.5 percentile: normalised ~ -2.5
        arr[organ] = ip["percentile_99_5"]  # normalised ~ +2.5: both oracles
        # the decoy (normalised 0: the fine oracle only): as many voxels as the organ, at the far side in y/x
        lo = tc2f.foreground_bbox(organ)
        decoy = np.zeros_like(organ)
        z0 = lo[0][0]
        side = max(2, int(round((organ.sum() / max(1, lo[0][1] - z0)) ** 0.5)))
        y0 = 0 if lo[1][0] > organ.shape[1] / 2 else organ.shape[1] - side
        x0 = 0 if lo[2][0] > organ.shape[2] / 2 else organ.shape[2] - side
        decoy[z0:lo[0][1], y0:y0 + side, x0:x0 + side] = True
        decoy &= ~ndimage.binary_dilation(organ, iterations=2)
        arr[decoy] = ip["mean"]
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(img)
        sitk.WriteImage(out, str(images / img_path.name))
        organs[case] = (organ, decoy)
    o = SimpleNamespace(env=env, images=images, organs=organs, coarse="nnUNetTrainerC2FTestOracleHigh:3d_fullres",
                        fine="nnUNetTrainerC2FTestOracleLow:3d_fullres", out=base / "pred", whole=base / "whole")
    # the pair through the CLI; and the fine oracle alone over the whole volumes through stock nnU-Net's predictor
    cmd = _c2f_cmd(ds, o.out, o.coarse, o.fine)
    cmd[cmd.index("-i") + 1] = str(o.images)
    o.proc = run(cmd, o.env)
    run(["nnUNetv2_predict", "-i", str(o.images), "-o", str(o.whole), "-d", str(ds.dataset_id), "-c", "3d_fullres",
         "-tr", o.fine.split(":")[0], "-f", "0", "-device", "cpu", "--disable_tta", "-npp", "1", "-nps", "1"], o.env)
    return o


def test_predict_c2f_box_path_end_to_end(oracle_pair):
    """Through the CLI with a coarse stage known to find the organ: the fine stage runs on the coarse box only, the
    pasted result has the input's geometry, matches the organ, and nothing outside the box is foreground (the
    decoy that the fine model finds outside the box is absent)."""
    import SimpleITK as sitk

    o = oracle_pair
    out, proc = o.out, o.proc
    assert_predictions_match_inputs(out, o.images)
    times = json.loads((out / c2f.TIMES_FILE).read_text())
    assert sorted(times["cases"]) == sorted(o.organs)
    for case, (organ, decoy) in o.organs.items():
        rec = times["cases"][case]
        assert rec["fallback"] is None and "found no foreground" not in proc.stdout
        assert rec["fine_preprocessing"] == "reused the coarse stage's"
        (box,) = rec["boxes"]
        gt_box = tc2f.foreground_bbox(organ)
        assert all(lo <= glo and ghi <= hi for (lo, hi), (glo, ghi) in zip(box, gt_box))  # the organ is inside
        inside = np.zeros(organ.shape, bool)
        inside[tc2f.box_slices(box)] = True
        assert decoy.sum() > 0 and not (decoy & inside).any()  # the decoy is outside the box: a real check
        assert 0 < rec["fine_voxels_fraction"] < 0.6
        seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz")))
        assert not seg[~inside].any()
        fg = seg > 0
        dice = 2 * (fg & organ).sum() / (fg.sum() + organ.sum())
        assert dice > 0.9, (case, dice)  # pasted at the right place
    # the same pair with the fine model over the whole volume (--fallback fine is not taken: coarse found the organ)
    # would find the decoy: shown with the fine oracle alone through stock nnU-Net's predictor
    case, (organ, decoy) = next(iter(o.organs.items()))
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(o.whole / f"{case}.nii.gz")))
    assert (seg[decoy] > 0).mean() > 0.5


@pytest.mark.parametrize("what", ["missing_fold", "missing_config", "missing_trainer", "bad_spec", "bad_input"])
def test_predict_c2f_bad_input_writes_nothing(nnunet_dataset, c2f_models, tmp_path, monkeypatch, capsys, what):
    """In-process through the CLI's ``main`` (what the console script calls: no import of torch and nnU-Net per
    case); the console script itself runs in test_predict_c2f_refuses_models_of_different_datasets."""
    from nnunet_ext.cli import main

    ds = nnunet_dataset
    for k, v in ds.env.items():
        if k.startswith("nnUNet"):
            monkeypatch.setenv(k, v)
    out = tmp_path / "pred"
    coarse, fine, extra, inp = c2f_models.coarse, c2f_models.fine, [], ds.images_ts
    expect = {"missing_fold": "fold 3", "missing_config": "3d_lowres", "missing_trainer": "nnUNetTrainerNope",
              "bad_spec": "TRAINER:CONFIGURATION", "bad_input": "broken_0000.nii.gz"}[what]
    if what == "missing_fold":
        extra = ["-f", "3"]
    elif what == "missing_config":
        fine = fine.replace("3d_fullres", "3d_lowres")
    elif what == "missing_trainer":
        coarse = "nnUNetTrainerNope:3d_fullres"
    elif what == "bad_spec":
        fine = "nnUNetTrainerPlainUNet"
    elif what == "bad_input":
        inp = tmp_path / "in"
        shutil.copytree(ds.images_ts, inp)
        (inp / "broken_0000.nii.gz").write_bytes(b"not a nifti")
    cmd = _c2f_cmd(ds, out, coarse, fine, *extra)
    cmd[cmd.index("-i") + 1] = str(inp)
    assert cmd[0] == "nnunet-ext"
    rc = main(cmd[1:])
    stderr = capsys.readouterr().err
    assert rc == 2, stderr[-2000:]
    err = stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nnunet-ext predict-c2f: error:") and expect in err[0], stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pred")]


def test_predict_c2f_refuses_models_of_different_datasets(nnunet_dataset, c2f_models, tmp_path):
    """A coarse model of another dataset (same trainer/config names) is refused, naming both datasets."""
    ds = nnunet_dataset
    src = c2f_models.coarse_dir
    other = ds.results / "Dataset992_OtherOrgan" / src.name
    if not other.exists():
        shutil.copytree(src, other)
        plans = json.loads((other / "plans.json").read_text())
        plans["dataset_name"] = "Dataset992_OtherOrgan"
        (other / "plans.json").write_text(json.dumps(plans))
    out = tmp_path / "pred"
    proc = run(_c2f_cmd(ds, out, c2f_models.coarse, c2f_models.fine, "--coarse-dataset", "992"), ds.env,
               check=False)
    assert proc.returncode == 2 and "Dataset992_OtherOrgan" in proc.stderr and "Dataset991" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
    # a different label set is refused too
    dj = json.loads((other / "dataset.json").read_text())
    plans = json.loads((other / "plans.json").read_text())
    plans["dataset_name"] = ds.dataset_folder.name
    (other / "plans.json").write_text(json.dumps(plans))
    dj["labels"] = {"background": 0, "liver": 1}
    (other / "dataset.json").write_text(json.dumps(dj))
    proc = run(_c2f_cmd(ds, out, c2f_models.coarse, c2f_models.fine, "--coarse-dataset", "992"), ds.env,
               check=False)
    assert proc.returncode == 2 and "label sets" in proc.stderr and not out.exists()
    shutil.rmtree(other.parent)


def test_make_coarse_config(nnunet_dataset):
    ds = nnunet_dataset
    src = json.loads(ds.plans_file.read_text())
    src["plans_name"] = "C2fTestPlans"
    plans_file = ds.plans_file.with_name("C2fTestPlans.json")
    plans_file.write_text(json.dumps(src))
    run(["nnunet-ext", "make-coarse-config", "-d", str(ds.dataset_id), "--plans", "C2fTestPlans"], ds.env)
    plans = json.loads(plans_file.read_text())
    entry = plans["configurations"]["3d_coarse4"]
    assert entry["inherits_from"] == "3d_fullres"
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    cm = PlansManager(plans).get_configuration("3d_coarse4")
    full = PlansManager(plans).get_configuration("3d_fullres")
    assert np.allclose(cm.spacing, np.array(full.spacing) * 4)
    assert cm.data_identifier == "C2fTestPlans_3d_coarse4"
    assert cm.normalization_schemes == full.normalization_schemes  # inherited
    assert all(p <= max(m, 8) * 2 for p, m in zip(cm.patch_size, cm.median_image_size_in_voxels))
    n = cm.network_arch_init_kwargs["n_stages"]
    assert len(cm.network_arch_init_kwargs["strides"]) == n
    # again: refused without --overwrite, one line
    proc = run(["nnunet-ext", "make-coarse-config", "-d", str(ds.dataset_id), "--plans", "C2fTestPlans"], ds.env,
               check=False)
    assert proc.returncode == 2 and "exists already" in proc.stderr
    proc = run(["nnunet-ext", "make-coarse-config", "-d", str(ds.dataset_id), "--plans", "NoSuchPlans"], ds.env,
               check=False)
    assert proc.returncode == 2 and "NoSuchPlans.json" in proc.stderr
    plans_file.unlink()


@pytest.mark.slow
def test_two_stage_end_to_end(nnunet_dataset, tmp_path):
    """make-coarse-config (R = 4) -> preprocess -> coarse + fine (box + 10 voxels) -> predict-c2f --mode two-stage."""
    ds = nnunet_dataset
    run(["nnunet-ext", "make-coarse-config", "-d", str(ds.dataset_id), "--name", "3d_coarse4ts", "--preprocess"],
        {**ds.env, "nnUNet_n_proc_DA": "1"})
    train(ds, "nnUNetTrainerPlainUNet_1epoch_4iters", "3d_coarse4ts")
    train(ds, "nnUNetTrainerPlainUNet_fine10vox_centre_1epoch_4iters", "3d_fullres")
    out = tmp_path / "pred"
    proc = run(["nnunet-ext", "predict-c2f", "-i", str(ds.images_ts), "-o", str(out), "-d", str(ds.dataset_id),
                "--coarse", "nnUNetTrainerPlainUNet_1epoch_4iters:3d_coarse4ts",
                "--fine", "nnUNetTrainerPlainUNet_fine10vox_centre_1epoch_4iters:3d_fullres", "-f", "0",
                "--mode", "two-stage", "-device", "cpu", "--disable_tta"], ds.env)
    assert_predictions_match_inputs(out, ds.images_ts)
    times = json.loads((out / c2f.TIMES_FILE).read_text())
    for case, rec in times["cases"].items():
        assert rec["mode"] == "two-stage"
        assert (rec["fallback"] is not None) == (f"{case}: the coarse model found no foreground" in proc.stdout)
        if not rec["fallback"]:
            assert len(rec["boxes"]) == 2


# ------------------------------------------------------------------------------------------------ crossval-c2f
@job("nnunet_dataset", "plain_unet_3d", "c2f_fine_3d", cost=20)
def crossval_c2f_run(ds, coarse_fold, fine_fold, tmp):
    """``crossval-c2f`` of the trained pair on fold 0, then ``benchmark --cv`` with the pair as a row."""
    out = tmp / "C2Fpair"
    proc = run(["nnunet-ext", "crossval-c2f", "-d", str(ds.dataset_id), "--coarse", spec_of(coarse_fold), "--fine",
                spec_of(fine_fold), "-f", "0", "-device", "cpu", "--disable_tta", "-o", str(out)], ds.env)
    coarse_tr, _, plans = spec_of(coarse_fold).split(":")
    bench = run(["nnunet-ext", "benchmark", "--skip-models", "--cv", "-d", str(ds.dataset_id), "-c", "3d_fullres",
                 "-p", plans, "--folds", "0", "-tr", coarse_tr, f"C2F={out}", "--reference", coarse_tr, "--out", str(tmp / "bench")],
                ds.env)
    return SimpleNamespace(out=out, proc=proc, bench=bench, tmp=tmp)


def test_crossval_c2f_scores_the_pair_and_benchmark_reads_it(nnunet_dataset, c2f_models, crossval_c2f_run):
    """Coarse fold 0 + fine fold 0 on fold 0's validation cases: nnU-Net's layout with summary.json; benchmark --cv
    takes the folder as a row beside a trainer. The fine trainer's own final validation was skipped, with a note."""
    ds, out, proc = nnunet_dataset, crossval_c2f_run.out, crossval_c2f_run.proc
    splits = json.loads((ds.preprocessed / ds.dataset_folder.name / "splits_final.json").read_text())
    val = sorted(splits[0]["val"])
    vdir = out / "fold_0" / "validation"
    assert sorted(p.name[: -len(".nii.gz")] for p in vdir.glob("*.nii.gz")) == val
    summary = json.loads((vdir / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == len(val)
    assert {"Dice", "HD95", "NSD"} <= set(summary["metric_per_case"][0]["metrics"]["1"])
    assert sorted(json.loads((vdir / c2f.TIMES_FILE).read_text())["cases"]) == val
    pair = json.loads((out / "crossval_c2f.json").read_text())
    assert pair["coarse"] == c2f_models.coarse and pair["folds"] == [0] and (out / "plans.json").is_file()
    assert "fold 0: mean foreground Dice" in proc.stdout
    fine_fold = c2f_models.fine_dir / "fold_0"
    assert (fine_fold / "validation_skipped_c2f.txt").is_file() and not (fine_fold / "validation" / "summary.json").exists()
    # benchmark --cv with the pair as a row beside the coarse trainer (run by the job)
    assert f"C2F: folds [0], {len(val)} cases" in crossval_c2f_run.bench.stdout, crossval_c2f_run.bench.stdout[-3000:]


@pytest.mark.parametrize("what", ["missing_fold", "no_val_cases", "other_dataset", "label_sets"])
def test_crossval_c2f_bad_input_writes_nothing(nnunet_dataset, c2f_models, tmp_path, monkeypatch, capsys, what):
    from nnunet_ext.cli import main

    ds = nnunet_dataset
    for k, v in ds.env.items():
        if k.startswith("nnUNet"):
            monkeypatch.setenv(k, v)
    coarse, fine, folds = c2f_models.coarse, c2f_models.fine, ["0"]
    models = ds.results / ds.dataset_folder.name
    if what == "missing_fold":
        folds, expect = ["0", "1"], "fold 1 missing"
    elif what == "no_val_cases":
        pre = tmp_path / "pre" / ds.dataset_folder.name
        pre.mkdir(parents=True)
        (pre / "splits_final.json").write_text(json.dumps([{"train": ["a"], "val": []}]))
        monkeypatch.setenv("nnUNet_preprocessed", str(pre.parent))
        expect = "fold 0 has no validation cases"
    else:
        spec, src, plans_name = (coarse, c2f_models.coarse_dir, "OtherDataset") if what == "other_dataset" else \
            (fine, c2f_models.fine_dir, "OtherLabels")
        trainer = spec.split(":")[0]
        copy = models / f"{trainer}__{plans_name}__3d_fullres"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(src, copy)
        if what == "other_dataset":
            plans = json.loads((copy / "plans.json").read_text())
            plans["dataset_name"] = "Dataset992_OtherOrgan"
            (copy / "plans.json").write_text(json.dumps(plans))
            coarse, expect = f"{trainer}:3d_fullres:{plans_name}", "Dataset992_OtherOrgan"
        else:
            dj = json.loads((copy / "dataset.json").read_text())
            dj["labels"] = {"background": 0, "liver": 1}
            (copy / "dataset.json").write_text(json.dumps(dj))
            fine, expect = f"{trainer}:3d_fullres:{plans_name}", "different label sets"
    out = tmp_path / "out"
    rc = main(["crossval-c2f", "-d", str(ds.dataset_id), "--coarse", coarse, "--fine", fine, "-f", *folds,
               "-device", "cpu", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("nnunet-ext crossval-c2f: error:") and expect in err[0], err
    assert not out.exists()
    if what in ("other_dataset", "label_sets"):
        shutil.rmtree(copy)
