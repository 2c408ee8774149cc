"""A small synthetic pancreas-CT dataset in nnU-Net v2 raw format: writing it, and its command-line options.

Real pancreas data (MSD Task07, NIH Pancreas-CT) is large and has to be downloaded. This module writes
cases of the phantom of :mod:`nnunet_ext.data.phantom`, which looks like MSD Task07 in miniature, so that
the whole nnU-Net pipeline (plan, preprocess, train, predict, evaluate) can be exercised anywhere, e.g. in
CI on two CPU cores. Cases differ in size, anatomy, intensities and image origin; a tumour is drawn in
about ``tumour_fraction`` of the cases. Everything is drawn from ``numpy.random.Generator`` objects seeded
from ``seed`` (one stream per case), so the same arguments give the same bytes.

Usage::

    from nnunet_ext.data.synthetic import make_dataset
    folder = make_dataset(os.environ["nnUNet_raw"])     # -> .../Dataset991_SyntheticPancreas
"""
from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_ext.data.phantom import LABELS, draw_case, draw_shape

__all__ = ["DatasetExistsError", "make_dataset", "add_make_dataset_arguments", "make_dataset_from_args"]

FILE_ENDING = ".nii.gz"


class DatasetExistsError(Exception):
    """The dataset folder (or another folder with the same dataset id) already exists."""


def _write(arr: np.ndarray, path: Path, spacing_zyx, origin_xyz) -> None:
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))  # SimpleITK wants (x, y, z)
    im.SetOrigin(tuple(float(o) for o in origin_xyz))
    im.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(im, str(path), True)


# --------------------------------------------------------------------------------------------------------------
# validation and file system safety
# --------------------------------------------------------------------------------------------------------------
def _as_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _validate(dataset_id, name, num_cases, num_test_cases, seed, size_scale, spacing, tumour_fraction,
              pancreas_scale, tumour_scale):
    dataset_id = _as_int(dataset_id, "dataset_id")
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset_id must be in 1..999, got {dataset_id}")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", name):
        raise ValueError(f"name must be letters, digits, '_' or '-' (starting with a letter or digit), got {name!r}")
    num_cases = _as_int(num_cases, "num_cases")
    if num_cases < 2:
        raise ValueError(f"num_cases must be >= 2 (nnU-Net needs at least two training cases), got {num_cases}")
    num_test_cases = _as_int(num_test_cases, "num_test_cases")
    if num_test_cases < 0:
        raise ValueError(f"num_test_cases must be >= 0, got {num_test_cases}")
    seed = _as_int(seed, "seed")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    size_scale = _positive(size_scale, "size_scale")
    try:
        spacing = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be three positive numbers (z, y, x), got {spacing!r}") from None
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive numbers (z, y, x), got {spacing!r}")
    try:
        tumour_fraction = float(tumour_fraction)
    except (TypeError, ValueError):
        raise ValueError(f"tumour_fraction must be a number in 0..1, got {tumour_fraction!r}") from None
    if not 0 <= tumour_fraction <= 1:
        raise ValueError(f"tumour_fraction must be a number in 0..1, got {tumour_fraction!r}")
    pancreas_scale, tumour_scale = (_positive(v, what) for v, what in ((pancreas_scale, "pancreas_scale"),
                                                                       (tumour_scale, "tumour_scale")))
    return (dataset_id, name, num_cases, num_test_cases, seed, size_scale, spacing, tumour_fraction, pancreas_scale,
            tumour_scale)


def _positive(value, what: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number > 0, got {value!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a number > 0, got {value!r}")
    return value


def _prepare_raw_dir(raw_dir: Path) -> None:
    """Make sure raw_dir is (or can be created as) a writable directory; clean one-line errors otherwise."""
    if raw_dir.exists() and not raw_dir.is_dir():
        raise NotADirectoryError(f"output path is not a directory: {raw_dir}")
    if not raw_dir.exists():
        parent = raw_dir
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise NotADirectoryError(f"cannot create output directory {raw_dir}: {parent} is not a directory")
        try:
            raw_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PermissionError(f"cannot create output directory {raw_dir}: {e.strerror or e}") from None
    if not os.access(raw_dir, os.W_OK | os.X_OK):
        raise PermissionError(f"output directory is not writable: {raw_dir}")


def _conflicting_folders(raw_dir: Path, dataset_id: int) -> list[Path]:
    return sorted(p for p in raw_dir.glob(f"Dataset{dataset_id:03d}_*"))


# --------------------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------------------
def make_dataset(raw_dir, dataset_id: int = 991, name: str = "SyntheticPancreas", num_cases: int = 8,
                 num_test_cases: int = 2, seed: int = 0, size_scale: float = 1.0,
                 spacing=(2.5, 0.8, 0.8), overwrite: bool = False, verbose: bool = False,
                 tumour_fraction: float = 0.5, pancreas_scale: float = 1.0, tumour_scale: float = 1.0) -> Path:
    """Write a synthetic pancreas-CT dataset in nnU-Net v2 raw format and return its folder.

    :param raw_dir: the nnUNet_raw folder (created if missing); the dataset goes to
        ``raw_dir/Dataset{dataset_id:03d}_{name}``
    :param num_cases: training cases (imagesTr/labelsTr), >= 2
    :param num_test_cases: test cases (imagesTs/labelsTs), case ids continue after the training ids
    :param seed: same seed and arguments -> byte-identical files
    :param size_scale: multiplies the case sizes (default z 20-28, y/x 56-72 voxels)
    :param spacing: voxel spacing in numpy (z, y, x) order, mm
    :param tumour_fraction: chance that a case has a tumour (0..1); at least one training case has one and, with
        two or more training cases, at least one has none
    :param pancreas_scale: multiplies the thickness of the pancreas, and so the size of the tumour inside it
    :param tumour_scale: multiplies the radii of the tumour (which stays cut to the inner part of the pancreas)
    :param overwrite: replace an existing folder of the same name (only once the new one is complete)
    :raises DatasetExistsError: a folder ``Dataset{dataset_id:03d}_*`` exists (and is not the one to overwrite)
    :raises ValueError: invalid arguments
    :raises NotADirectoryError, PermissionError: raw_dir cannot be used
    """
    (dataset_id, name, num_cases, num_test_cases, seed, size_scale, spacing, tumour_fraction, pancreas_scale,
     tumour_scale) = _validate(dataset_id, name, num_cases, num_test_cases, seed, size_scale, spacing,
                               tumour_fraction, pancreas_scale, tumour_scale)
    raw_dir = Path(raw_dir).expanduser().absolute()
    target = raw_dir / f"Dataset{dataset_id:03d}_{name}"

    if raw_dir.is_dir():
        others = [p for p in _conflicting_folders(raw_dir, dataset_id) if p.name != target.name]
        if others:
            raise DatasetExistsError(f"dataset id {dataset_id} is already used by {others[0]}"
                                     + ("" if not overwrite else " (overwrite only replaces " + target.name + ")"))
        if target.exists() and not overwrite:
            raise DatasetExistsError(f"dataset folder already exists: {target} (use overwrite to replace it)")
    _prepare_raw_dir(raw_dir)

    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp_{target.name}_", dir=raw_dir))
    except OSError as e:
        raise PermissionError(f"cannot write into output directory {raw_dir}: {e.strerror or e}") from None
    try:
        _write_dataset(tmp, name, num_cases, num_test_cases, seed, size_scale, spacing, verbose, tumour_fraction,
                       pancreas_scale, tumour_scale)
        if target.exists():  # overwrite: swap in the complete new folder, then drop the old one
            old = Path(tempfile.mkdtemp(prefix=f".old_{target.name}_", dir=raw_dir))
            os.replace(target, old / "dataset")
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old / "dataset", target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if verbose:
        print(f"synthetic dataset written to {target}")
    return target


def _write_dataset(folder: Path, name, num_cases, num_test_cases, seed, size_scale, spacing, verbose,
                   tumour_fraction=0.5, pancreas_scale=1.0, tumour_scale=1.0) -> None:
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir()
    total = num_cases + num_test_cases

    # tumour in about tumour_fraction of the cases, but always in some and (when possible) not in all training cases
    flags = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,))).random(total) < tumour_fraction
    if not flags[:num_cases].any():
        flags[0] = True
    if flags[:num_cases].all():
        flags[num_cases - 1] = False

    for i in range(total):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, i)))
        shape = draw_shape(rng, size_scale)
        img, lab = draw_case(rng, shape, spacing, bool(flags[i]), pancreas_scale, tumour_scale)
        extent_xyz = np.array(shape[::-1]) * np.array(spacing[::-1])
        origin = np.round(-extent_xyz / 2 + rng.uniform([-20, -40, -700], [20, 0, -300]), 1)
        split = "Tr" if i < num_cases else "Ts"
        case = f"{name}_{i:03d}"
        _write(img, folder / f"images{split}" / f"{case}_0000{FILE_ENDING}", spacing, origin)
        _write(lab, folder / f"labels{split}" / f"{case}{FILE_ENDING}", spacing, origin)
        if verbose:
            print(f"{case} ({'train' if split == 'Tr' else 'test'}): shape {shape}, "
                  f"pancreas {int((lab == 1).sum())} vox, tumour {int((lab == 2).sum())} vox")

    dataset_json = {
        "name": name,
        "description": "Synthetic pancreas-CT phantom (not real patient data), shaped like MSD Task07 Pancreas "
                       "but small: elliptical abdomen with fat, soft tissue, liver, spleen, kidneys, spine, "
                       "vessels, a curved pancreas (label 1) and, in about half of the cases, a hypodense "
                       "tumour (label 2). Generated by nnunet_ext.data.synthetic.",
        "reference": "nnunet_ext.data.synthetic (synthetic data)",
        "licence": "CC0 (synthetic)",
        "release": "1.0",
        "tensorImageSize": "3D",
        "channel_names": {"0": "CT"},
        "labels": dict(LABELS),
        "numTraining": num_cases,
        "numTest": num_test_cases,
        "file_ending": FILE_ENDING,
        "generator": {"seed": seed, "size_scale": size_scale, "spacing_zyx": list(spacing)},
    }
    # recorded where not the default, so that a default dataset.json stays as it was
    for key, value, default in (("tumour_fraction", tumour_fraction, 0.5), ("pancreas_scale", pancreas_scale, 1.0),
                                ("tumour_scale", tumour_scale, 1.0)):
        if value != default:
            dataset_json["generator"][key] = value
    with open(folder / "dataset.json", "w") as f:
        json.dump(dataset_json, f, indent=4)
        f.write("\n")


def add_make_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of :func:`make_dataset` to an argparse parser (nnU-Net style help)."""
    if parser.description is None:
        parser.description = ("Generates a small synthetic pancreas-CT dataset (CT phantom with pancreas and tumour "
                              "labels, shaped like MSD Task07 Pancreas) in nnU-Net v2 raw format, in "
                              "OUTPUT/DatasetXXX_NAME. Useful to test the whole nnU-Net pipeline without real data.")
    parser.add_argument("-o", "--output", type=str, required=True,
                        help="[REQUIRED] nnUNet_raw folder in which the dataset folder DatasetXXX_NAME is created "
                             "(created if missing).")
    parser.add_argument("--id", type=int, default=991,
                        help="[OPTIONAL] Dataset id (1-999). Default: 991")
    parser.add_argument("--name", type=str, default="SyntheticPancreas",
                        help="[OPTIONAL] Dataset name, used for the folder and the case identifiers. "
                             "Default: SyntheticPancreas")
    parser.add_argument("--cases", type=int, default=8,
                        help="[OPTIONAL] Number of training cases (imagesTr/labelsTr), at least 2. Default: 8")
    parser.add_argument("--test-cases", type=int, default=2,
                        help="[OPTIONAL] Number of test cases (imagesTs/labelsTs). Default: 2")
    parser.add_argument("--seed", type=int, default=0,
                        help="[OPTIONAL] Random seed. The same seed and options give identical files. Default: 0")
    parser.add_argument("--size-scale", type=float, default=1.0,
                        help="[OPTIONAL] Multiplies the case sizes (default about 24 x 64 x 64 voxels; 4 gives "
                             "MSD-like ~100 x 256 x 256). Default: 1.0")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"), default=[2.5, 0.8, 0.8],
                        help="[OPTIONAL] Voxel spacing in mm, in z y x order. Default: 2.5 0.8 0.8")
    parser.add_argument("--tumour-fraction", type=float, default=0.5,
                        help="[OPTIONAL] Chance that a case has a tumour (0..1). Default: 0.5")
    parser.add_argument("--pancreas-scale", type=float, default=1.0,
                        help="[OPTIONAL] Multiplies the thickness of the pancreas, and so the size of the tumour "
                             "inside it. Default: 1.0")
    parser.add_argument("--tumour-scale", type=float, default=1.0,
                        help="[OPTIONAL] Multiplies the radii of the tumour (cut to the inner part of the pancreas "
                             "all the same). Default: 1.0")
    parser.add_argument("--overwrite", action="store_true",
                        help="[OPTIONAL] Replace an existing dataset folder of the same name. Without it an "
                             "existing DatasetXXX_* folder with this id is an error.")


def make_dataset_from_args(args) -> Path:
    """Run :func:`make_dataset` with the options added by :func:`add_make_dataset_arguments`."""
    return make_dataset(args.output, dataset_id=args.id, name=args.name, num_cases=args.cases,
                        num_test_cases=args.test_cases, seed=args.seed, size_scale=args.size_scale,
                        spacing=tuple(args.spacing), overwrite=args.overwrite,
                        verbose=getattr(args, "verbose", False),
                        tumour_fraction=getattr(args, "tumour_fraction", 0.5),
                        pancreas_scale=getattr(args, "pancreas_scale", 1.0),
                        tumour_scale=getattr(args, "tumour_scale", 1.0))
