"""Coarse-to-fine: box arithmetic, the fine and centre trainers by name, fine-stage patch sampling, centre loss (the
pipeline on fake stages: tests/unit/test_c2f_pipeline.py; on the test dataset: tests/integration/test_c2f*.py)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

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
    # margins in mm for both pairs (the fine box margin of training is predict-c2f's default)
    assert tc2f.training_margin(names["nnUNetTrainerTwoStageUNetFine"]) == (tc2f.TWO_STAGE_FINE_MARGIN_MM, None)
    assert tc2f.training_margin(names["nnUNetTrainerResDSNFine"]) == (tc2f.DEFAULT_FINE_MARGIN_MM, None)
    assert tc2f.training_margin(names["nnUNetTrainerResDSN"]) == (None, None)


def test_fine_margin_is_converted_in_one_place_for_training_and_inference():
    """The fine trainer's crop (FgBoxCroppedDataset) and predict-c2f's box margin both come from
    boxes.fine_margin_voxels on the fine grid's spacing (boxes.configuration_grid_spacing)."""
    from nnunet_ext import boxes

    assert boxes.configuration_grid_spacing([2.5, 0.8, 0.8], [3.0, 0.7, 0.7]) == [2.5, 0.8, 0.8]
    assert boxes.configuration_grid_spacing([0.8, 0.8], [3.0, 0.7, 0.7]) == [3.0, 0.8, 0.8]  # 2d: slice spacing
    assert boxes.fine_margin_voxels(10.0, None, [2.5, 0.8, 0.8]) == (4, 13, 13)
    assert boxes.fine_margin_voxels(None, 10, [2.5, 0.8, 0.8]) == (10, 10, 10)
    with pytest.raises(ValueError):
        boxes.fine_margin_voxels(10.0, 10, [1, 1, 1])
    ds = _FakeDataset()
    w = FgBoxCroppedDataset(ds, margin_mm=10.0, spacing=(2.5, 0.8, 0.8))
    _, _, _, props = w.load_case("case")
    fg = ((8, 11), (25, 31), (30, 34))
    expected = tc2f.expand_bbox(fg, boxes.fine_margin_voxels(10.0, None, [2.5, 0.8, 0.8]), ds.shape)
    assert props["c2f_fg_box"] == expected


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


def test_fold_dice_text_names_classes_without_a_mean():
    """crossval-c2f's fold line: a class empty in every case is n/a with its count, the others keep their mean (a NaN
    foreground mean hid them)."""
    from nnunet_ext.c2f.crossval import fold_dice_text

    summary = {"metric_per_case": [{}, {}],
               "mean": {"1": {"Dice": 0.85088, "n_both_empty": 0}, "2": {"Dice": float("nan"), "n_both_empty": 2}},
               "foreground_mean": {"Dice": float("nan")}}
    assert fold_dice_text(summary) == "1: 0.8509, 2: n/a (empty in reference and prediction in 2 of 2 cases)"
    assert fold_dice_text({"mean": {"1": {"Dice": 0.5}}}) == "1: 0.5000"
