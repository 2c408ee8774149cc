"""Tests of the embedded synthetic pancreas-CT dataset generator (nnunet_ext.data.synthetic)."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.ndimage import binary_dilation

from nnunet_ext.data import synthetic
from nnunet_ext.data.synthetic import (DatasetExistsError, add_make_dataset_arguments, make_dataset,
                                  make_dataset_from_args)

NAME = "SyntheticPancreas"


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _cases(folder: Path, split: str = "Tr"):
    """(image array, label array) for every case of a split, in case order."""
    labels = sorted((folder / f"labels{split}").glob("*.nii.gz"))
    return [(_read(folder / f"images{split}" / (p.name[: -len(".nii.gz")] + "_0000.nii.gz")), _read(p))
            for p in labels]


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(raw: Path) -> list:
    return [p.name for p in raw.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """The default dataset (8 training + 2 test cases)."""
    return make_dataset(tmp_path_factory.mktemp("synthetic") / "raw")


@pytest.fixture(scope="module")
def train_cases(dataset):
    return _cases(dataset, "Tr")


# ------------------------------------------------------------------------------------------------ structure
def test_structure_and_dataset_json(dataset):
    assert dataset.name == "Dataset991_SyntheticPancreas"
    dj = json.loads((dataset / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "CT"}
    assert dj["labels"] == {"background": 0, "pancreas": 1, "tumour": 2}
    assert dj["numTraining"] == 8
    assert dj["file_ending"] == ".nii.gz"
    assert dj["name"] == NAME
    assert "synthetic" in dj["description"].lower()

    train_ids = [f"{NAME}_{i:03d}" for i in range(8)]
    test_ids = [f"{NAME}_{i:03d}" for i in range(8, 10)]  # test ids continue after the training ids
    assert sorted(p.name for p in (dataset / "imagesTr").iterdir()) == [f"{c}_0000.nii.gz" for c in train_ids]
    assert sorted(p.name for p in (dataset / "labelsTr").iterdir()) == [f"{c}.nii.gz" for c in train_ids]
    assert sorted(p.name for p in (dataset / "imagesTs").iterdir()) == [f"{c}_0000.nii.gz" for c in test_ids]
    assert sorted(p.name for p in (dataset / "labelsTs").iterdir()) == [f"{c}.nii.gz" for c in test_ids]
    assert _leftovers(dataset.parent) == []


class _InProcessPool:
    """Stands in for the spawn pool of verify_dataset_integrity: same checks, run in this process (a spawned
    worker re-imports torch and nnU-Net, which costs seconds)."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def starmap(fn, iterable):
        return [fn(*a) for a in iterable]


def test_nnunet_verify_dataset_integrity(dataset, monkeypatch):
    from types import SimpleNamespace

    from nnunetv2.experiment_planning import verify_dataset_integrity as vdi

    monkeypatch.setattr(vdi, "multiprocessing", SimpleNamespace(get_context=lambda *_: SimpleNamespace(
        Pool=_InProcessPool)))
    vdi.verify_dataset_integrity(str(dataset), num_processes=1)


# ------------------------------------------------------------------------------------------------ content
def test_dtypes_and_labels(dataset, train_cases):
    img = sitk.ReadImage(str(dataset / "imagesTr" / f"{NAME}_000_0000.nii.gz"))
    seg = sitk.ReadImage(str(dataset / "labelsTr" / f"{NAME}_000.nii.gz"))
    assert img.GetPixelID() == sitk.sitkInt16
    assert seg.GetPixelID() == sitk.sitkUInt8
    for im, lab in train_cases + _cases(dataset, "Ts"):
        assert im.shape == lab.shape
        assert set(np.unique(lab).tolist()) <= {0, 1, 2}


def test_pancreas_and_tumour(train_cases):
    with_tumour = 0
    for _, lab in train_cases:
        assert (lab == 1).sum() > 50, "every training case has pancreas"
        tumour = lab == 2
        if tumour.any():
            with_tumour += 1
            near_pancreas = binary_dilation(lab == 1, iterations=3)
            assert near_pancreas[tumour].all(), "tumour must lie inside the pancreas neighbourhood"
            zz, yy, xx = np.nonzero(lab > 0)
            tz, ty, tx = np.nonzero(tumour)
            for t, p in ((tz, zz), (ty, yy), (tx, xx)):
                assert p.min() <= t.min() and t.max() <= p.max()
    assert 1 <= with_tumour < len(train_cases), "a tumour in some, but not all, training cases"


def test_hounsfield_units_plausible(train_cases):
    for im, lab in train_cases:
        assert (im < -900).mean() > 0.05, "air around the body"
        assert im.min() >= -1024 and im.max() > 300, "air and bone"
        body = im > -500
        assert (im[body] < -50).any(), "fat"
        pancreas_mean = im[lab == 1].mean()
        assert 70 <= pancreas_mean <= 130, pancreas_mean
        if (lab == 2).any():
            assert im[lab == 2].mean() < pancreas_mean - 10, "the tumour is hypodense"
        # noise: homogeneous soft tissue is not flat
        assert im[lab == 1].std() > 5


def test_geometry_written_for_simpleitk(tmp_path):
    spacing = (3.0, 0.7, 0.9)  # numpy z, y, x
    folder = make_dataset(tmp_path, num_cases=2, num_test_cases=1, spacing=spacing, seed=3)
    origins = []
    for p in sorted(folder.rglob("*.nii.gz")):
        im = sitk.ReadImage(str(p))
        assert np.allclose(im.GetSpacing(), spacing[::-1], atol=1e-5), (p.name, im.GetSpacing())
        assert np.allclose(im.GetDirection(), np.eye(3).ravel())
        origins.append(im.GetOrigin())
        if "_0000" not in p.name:  # image and label share their geometry
            img = sitk.ReadImage(str(p.parent.parent / f"images{p.parent.name[-2:]}" /
                                     p.name.replace(".nii.gz", "_0000.nii.gz")))
            assert np.allclose(img.GetOrigin(), im.GetOrigin()) and img.GetSize() == im.GetSize()
    assert all(np.abs(o).max() > 1 for o in origins), "non-trivial origin"
    assert len({tuple(np.round(o, 3)) for o in origins}) == 3, "origin varies per case"


def test_sizes_vary_and_scale(train_cases, tmp_path):
    shapes = [im.shape for im, _ in train_cases]
    assert len(set(shapes)) > 1
    for z, y, x in shapes:
        assert 20 <= z <= 28 and 56 <= y <= 72 and 56 <= x <= 72
    small = _cases(make_dataset(tmp_path, num_cases=2, num_test_cases=0, size_scale=0.5))
    for im, lab in small:
        z, y, x = im.shape
        assert 10 <= z <= 14 and 28 <= y <= 36 and 28 <= x <= 36
        assert (lab == 1).any()


# ------------------------------------------------------------------------------------------------ determinism
def test_deterministic_for_a_seed(tmp_path):
    a = make_dataset(tmp_path / "a", num_cases=2, num_test_cases=1, seed=5)
    b = make_dataset(tmp_path / "b", num_cases=2, num_test_cases=1, seed=5)
    c = make_dataset(tmp_path / "c", num_cases=2, num_test_cases=1, seed=6)
    assert _digest(a) == _digest(b), "same arguments -> same bytes"
    for (ia, la), (ib, lb) in zip(_cases(a) + _cases(a, "Ts"), _cases(b) + _cases(b, "Ts")):
        assert np.array_equal(ia, ib) and np.array_equal(la, lb)
    ia, _ = _cases(a)[0]
    ic, _ = _cases(c)[0]
    assert ia.shape != ic.shape or not np.array_equal(ia, ic), "different seed -> different data"


# ------------------------------------------------------------------------------------------------ safety
def test_refuses_to_overwrite(tmp_path):
    folder = make_dataset(tmp_path, num_cases=2, num_test_cases=0)
    before = _digest(folder)
    with pytest.raises(DatasetExistsError, match=folder.name):
        make_dataset(tmp_path, num_cases=3, num_test_cases=0, seed=1)
    # another folder with the same id but a different name is a conflict too
    with pytest.raises(DatasetExistsError, match=folder.name):
        make_dataset(tmp_path, name="Other", num_cases=2, num_test_cases=0)
    assert _digest(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]


def test_overwrite_replaces(tmp_path):
    folder = make_dataset(tmp_path, num_cases=2, num_test_cases=1, seed=0)
    before = _digest(folder)
    again = make_dataset(tmp_path, num_cases=3, num_test_cases=0, seed=1, overwrite=True)
    assert again == folder
    assert _digest(folder) != before
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 3
    assert not any((folder / "imagesTs").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name], "no temporary folders left behind"


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    old = make_dataset(tmp_path, num_cases=2, num_test_cases=0)
    before = _digest(old)
    calls = {"n": 0}
    real_write = synthetic._write

    def failing_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_write", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        make_dataset(tmp_path, num_cases=2, num_test_cases=0, seed=1, overwrite=True)
    assert _digest(old) == before, "the old dataset survives a failed overwrite"
    with pytest.raises(RuntimeError, match="disk full"):
        calls["n"] = 0
        make_dataset(tmp_path, dataset_id=992, num_cases=2, num_test_cases=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [old.name]


def test_unusable_output_path(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for bad in (afile / "x", afile):
        with pytest.raises((NotADirectoryError, PermissionError)) as e:
            make_dataset(bad, num_cases=2, num_test_cases=0)
        assert "\n" not in str(e.value) and str(afile) in str(e.value)
    assert afile.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_read_only_output_dir(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if not hasattr(os, "geteuid") or os.geteuid() == 0:  # root may write anyway: pretend it may not
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != ro and real_access(p, mode, **kw))
    try:
        with pytest.raises(PermissionError, match=str(ro)):
            make_dataset(ro, num_cases=2, num_test_cases=0)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"num_cases": 1}, "num_cases"),
    ({"num_test_cases": -1}, "num_test_cases"),
    ({"size_scale": 0}, "size_scale"),
    ({"size_scale": -2.0}, "size_scale"),
    ({"dataset_id": 0}, "dataset_id"),
    ({"dataset_id": 1000}, "dataset_id"),
    ({"spacing": (2.5, 0.0, 0.8)}, "spacing"),
    ({"spacing": (2.5, 0.8)}, "spacing"),
    ({"name": "bad/name"}, "name"),
    ({"seed": -1}, "seed"),
])
def test_validation(tmp_path, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        make_dataset(tmp_path / "raw", **kwargs)
    assert not (tmp_path / "raw").exists(), "nothing written on bad input"


# ------------------------------------------------------------------------------------------------ command line
def test_argparse_front_end(tmp_path):
    parser = argparse.ArgumentParser()
    add_make_dataset_arguments(parser)
    assert parser.description
    args = parser.parse_args(["-o", str(tmp_path), "--id", "7", "--name", "Tiny", "--cases", "2",
                              "--test-cases", "1", "--seed", "2", "--size-scale", "0.5",
                              "--spacing", "2", "1", "1"])
    folder = make_dataset_from_args(args)
    assert folder == tmp_path / "Dataset007_Tiny"
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 2
    assert np.allclose(sitk.ReadImage(str(folder / "imagesTs" / "Tiny_002_0000.nii.gz")).GetSpacing(), (1, 1, 2))
    with pytest.raises(DatasetExistsError):
        make_dataset_from_args(args)
    args = parser.parse_args(["-o", str(tmp_path), "--id", "7", "--name", "Tiny", "--cases", "3", "--overwrite"])
    assert make_dataset_from_args(args) == folder
    defaults = parser.parse_args(["-o", "x"])
    assert (defaults.id, defaults.name, defaults.cases, defaults.test_cases, defaults.seed, defaults.size_scale,
            list(defaults.spacing), defaults.overwrite) == (991, NAME, 8, 2, 0, 1.0, [2.5, 0.8, 0.8], False)
    with pytest.raises(SystemExit):
        parser.parse_args([])  # -o is required


# ------------------------------------------------------------------------------------------------ demo's options
def test_tumour_fraction_pancreas_and_tumour_scale(dataset, train_cases, tmp_path):
    folder = make_dataset(tmp_path, num_cases=4, num_test_cases=2, tumour_fraction=1.0, pancreas_scale=2.0,
                          tumour_scale=2.0)
    cases = _cases(folder) + _cases(folder, "Ts")
    assert [bool((lab == 2).any()) for _, lab in cases] == [True, True, True, False, True, True], \
        "a tumour in every case but one training case"
    for (im, lab), (im0, lab0) in zip(cases[:4], train_cases):
        assert im.shape == im0.shape, "same seed: same case sizes, only the anatomy differs"
        assert (lab > 0).sum() > 2.5 * (lab0 > 0).sum(), "a thicker pancreas"
        tumour = lab == 2
        if tumour.any():
            assert tumour.sum() > 150, "a larger tumour"
            # inside the (thicker) pancreas: near its label and within its extent
            assert binary_dilation(lab == 1, iterations=10)[tumour].all()
            for t, p in zip(np.nonzero(tumour), np.nonzero(lab == 1)):
                assert p.min() <= t.min() and t.max() <= p.max()
    generator = json.loads((folder / "dataset.json").read_text())["generator"]
    assert (generator["tumour_fraction"], generator["pancreas_scale"], generator["tumour_scale"]) == (1.0, 2.0, 2.0)
    default = json.loads((dataset / "dataset.json").read_text())["generator"]
    assert set(default) == {"seed", "size_scale", "spacing_zyx"}, "a default dataset.json is as it was"


@pytest.mark.parametrize("kwargs, fragment", [
    ({"tumour_fraction": 1.5}, "tumour_fraction"),
    ({"tumour_fraction": -0.1}, "tumour_fraction"),
    ({"tumour_fraction": "x"}, "tumour_fraction"),
    ({"pancreas_scale": 0}, "pancreas_scale"),
    ({"pancreas_scale": float("inf")}, "pancreas_scale"),
    ({"tumour_scale": -1}, "tumour_scale"),
])
def test_validation_of_the_demo_options(tmp_path, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        make_dataset(tmp_path / "raw", **kwargs)
    assert not (tmp_path / "raw").exists(), "nothing written on bad input"


def test_argparse_demo_options(tmp_path):
    parser = argparse.ArgumentParser()
    add_make_dataset_arguments(parser)
    defaults = parser.parse_args(["-o", "x"])
    assert (defaults.tumour_fraction, defaults.pancreas_scale, defaults.tumour_scale) == (0.5, 1.0, 1.0)
    args = parser.parse_args(["-o", str(tmp_path), "--cases", "2", "--test-cases", "0", "--tumour-fraction", "1",
                              "--pancreas-scale", "1.5", "--tumour-scale", "1.2"])
    generator = json.loads((make_dataset_from_args(args) / "dataset.json").read_text())["generator"]
    assert (generator["tumour_fraction"], generator["pancreas_scale"], generator["tumour_scale"]) == (1.0, 1.5, 1.2)
