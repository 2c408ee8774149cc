"""A small synthetic pancreas-CT dataset in nnU-Net v2 raw format.

Real pancreas data (MSD Task07, NIH Pancreas-CT) is large and has to be downloaded. This module draws a
*phantom* that looks like MSD Task07 in miniature, so that the whole nnU-Net pipeline (plan, preprocess,
train, predict, evaluate) can be exercised anywhere, e.g. in CI on two CPU cores.

The phantom
-----------
Every case is one CT channel in Hounsfield units (int16) with a label map (uint8: 0 background,
1 pancreas, 2 tumour). Anatomy is drawn in coordinates normalised to the volume extent (-1..1 on every
axis), so the same abdomen comes out at any image size. Array axes are numpy (z, y, x); low z indices are
the upper (cranial) slices, y grows towards the patient's back and image-left (x < 0) is the patient's right.
From the outside in:

* air (-1000 HU) outside an elliptical body whose axes change slowly along z;
* a subcutaneous fat layer (~-100 HU) and soft tissue / muscle filling the abdomen (30-45 HU);
* neighbouring organs of similar density: a liver-like ellipsoid (~60 HU, upper slices, patient's right),
  a spleen-like one (~50 HU, upper slices, patient's left) and two kidney-like ones (~35-45 HU, lower
  slices, either side of the spine, each in a rim of perirenal fat);
* bone: a vertebral body (cancellous ~400 HU with a denser cortex, thin intervertebral discs every
  ~30 mm) with the spinal canal and posterior arch, and a few rib cross-sections in the upper slices;
* tubular vessels running along z with a little drift (~150-200 HU): aorta, inferior vena cava,
  superior mesenteric artery and vein;
* the pancreas (~90-115 HU, label 1): a tube of varying thickness (thick head, narrow neck, body,
  thin tail) around a quadratic Bezier curve that bends anteriorly in the axial plane and rises
  from the head (patient's right, next to the vena cava) to the tail (next to the spleen), so it
  spans several slices;
* in roughly half of the cases a hypodense tumour (~20-40 HU, label 2): an ellipsoidal blob centred on
  the pancreas head or body, cut to the inner part of the pancreas, so label 2 always lies inside the
  pancreas with a rim of label 1 around it.

The piecewise constant image is smoothed mildly (partial volume), then correlated Gaussian noise
(sd 10-18 HU) is added. Case sizes vary (default z 20-28, y and x 56-72 voxels; ``size_scale``
multiplies them, 4 gives MSD-like ~100 x 256 x 256), as do organ positions, sizes, intensities and the
image origin. Everything is drawn from ``numpy.random.Generator`` objects seeded from ``seed`` (one
stream per case), so the same arguments give the same bytes.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

__all__ = ["DatasetExistsError", "make_dataset", "add_make_dataset_arguments", "make_dataset_from_args"]

LABELS = {"background": 0, "pancreas": 1, "tumour": 2}
FILE_ENDING = ".nii.gz"

#: default case size range (inclusive), voxels, before ``size_scale``
_Z_RANGE = (20, 28)
_YX_RANGE = (56, 72)
#: smallest size a case is ever drawn at, whatever ``size_scale`` says
_MIN_SHAPE = (4, 16, 16)
#: z (normalised) half-thickness of the pancreas tube relative to its in-plane radius
_PANCREAS_KZ = 2.0


class DatasetExistsError(Exception):
    """The dataset folder (or another folder with the same dataset id) already exists."""


# --------------------------------------------------------------------------------------------------------------
# drawing helpers
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Grid:
    """Normalised coordinates (-1..1) of a volume, as broadcastable arrays of shape (nz,1,1), (1,ny,1), (1,1,nx)."""

    z: np.ndarray
    y: np.ndarray
    x: np.ndarray

    @classmethod
    def of(cls, shape: Sequence[int]) -> "_Grid":
        nz, ny, nx = shape
        return cls(np.linspace(-1, 1, nz, dtype=np.float32).reshape(nz, 1, 1),
                   np.linspace(-1, 1, ny, dtype=np.float32).reshape(1, ny, 1),
                   np.linspace(-1, 1, nx, dtype=np.float32).reshape(1, 1, nx))

    @property
    def shape(self):
        return self.z.shape[0], self.y.shape[1], self.x.shape[2]


def _ellipse(g: _Grid, cy, cx, ay, ax) -> np.ndarray:
    """Normalised squared radius of an elliptic cylinder along z (< 1 inside); centre/axes may vary with z."""
    return ((g.y - cy) / ay) ** 2 + ((g.x - cx) / ax) ** 2


def _ellipsoid(g: _Grid, cz, cy, cx, az, ay, ax) -> np.ndarray:
    """Normalised squared radius of an axis-aligned ellipsoid (< 1 inside)."""
    return ((g.z - cz) / az) ** 2 + _ellipse(g, cy, cx, ay, ax)


def _to_index(v: float, n: int) -> float:
    """Normalised coordinate -> (fractional) voxel index along an axis of length n."""
    return (v + 1.0) / 2.0 * (n - 1)


def _bbox(shape, lo, hi):
    """Voxel slices covering the normalised box [lo, hi] (z, y, x), with one voxel margin, clipped to the volume."""
    sl = []
    for n, a, b in zip(shape, lo, hi):
        i0 = max(int(math.floor(_to_index(a, n))) - 1, 0)
        i1 = min(int(math.ceil(_to_index(b, n))) + 2, n)
        sl.append(slice(i0, max(i1, i0 + 1)))
    return tuple(sl)


def _sub(g: _Grid, sl) -> _Grid:
    return _Grid(g.z[sl[0]], g.y[:, sl[1]], g.x[:, :, sl[2]])


# --------------------------------------------------------------------------------------------------------------
# one case
# --------------------------------------------------------------------------------------------------------------
def _draw_shape(rng: np.random.Generator, size_scale: float) -> tuple[int, int, int]:
    nz = int(rng.integers(_Z_RANGE[0], _Z_RANGE[1] + 1))
    ny, nx = (int(v) for v in rng.integers(_YX_RANGE[0], _YX_RANGE[1] + 1, size=2))
    return tuple(max(int(round(n * size_scale)), m) for n, m in zip((nz, ny, nx), _MIN_SHAPE))


def _pancreas_curve(rng: np.random.Generator):
    """Centre line (Bezier in the axial plane, rising along z) and radius profile of the pancreas."""
    def j(s):
        return rng.uniform(-s, s)

    head = np.array([0.12 + j(0.04), -0.28 + j(0.04)])
    bend = np.array([-0.28 + j(0.06), 0.05 + j(0.06)])   # pulls the neck/body anteriorly
    tail = np.array([0.16 + j(0.04), 0.52 + j(0.04)])
    z_head = 0.15 + j(0.1)
    z_tail = z_head - rng.uniform(0.25, 0.45)              # the tail rises towards the splenic hilum
    thick = rng.uniform(0.9, 1.15)
    radius_knots = (np.array([0.0, 0.15, 0.32, 0.6, 1.0]),
                    thick * np.array([0.12, 0.11, 0.065, 0.075, 0.045]))   # head, head, neck, body, tail

    def centre(t):
        t = np.asarray(t, dtype=np.float64)[..., None]
        yx = (1 - t) ** 2 * head + 2 * (1 - t) * t * bend + t ** 2 * tail
        z = z_head + (z_tail - z_head) * t
        return np.concatenate([z, yx], axis=-1)  # (..., 3) as (z, y, x)

    def radius(t):
        return np.interp(t, *radius_knots)

    return centre, radius


def _tube_field(g: _Grid, points: np.ndarray, radii: np.ndarray, kz: float) -> np.ndarray:
    """min over centre-line samples of distance / local radius (< 1 inside the tube); z distances scaled by 1/kz."""
    field = np.full(g.shape, np.inf, dtype=np.float32)
    for (pz, py, px), r in zip(points, radii):
        d2 = ((g.z - pz) / kz) ** 2 + (g.y - py) ** 2 + (g.x - px) ** 2
        np.minimum(field, d2 / np.float32(r * r), out=field)
    return np.sqrt(field)


def _draw_case(rng: np.random.Generator, shape, spacing, with_tumour: bool):
    """Draw one case. Returns (image int16 (z,y,x), label uint8 (z,y,x))."""
    g = _Grid.of(shape)
    nz, ny, nx = shape
    u = rng.uniform
    img = np.full(shape, -1000.0, dtype=np.float32)
    lab = np.zeros(shape, dtype=np.uint8)

    # body outline (elliptic, axes drift slowly along z) and subcutaneous fat
    by, bx = u(0.74, 0.82), u(0.86, 0.94)
    taper = 1.0 + u(-0.04, 0.04) * g.z
    cy_body = u(-0.04, 0.04)
    body = _ellipse(g, cy_body, 0.0, by * taper, bx * taper) < 1
    fat_t = u(0.06, 0.1)
    inner = _ellipse(g, cy_body, 0.0, (by - fat_t) * taper, (bx - fat_t) * taper) < 1
    img[body] = u(-110, -90)
    img[inner] = u(30, 45)

    def paint(mask, hu, clip=True):
        if clip:
            mask = mask & inner
        img[mask] = hu

    # neighbouring organs of similar density (drawn so that later ones cover earlier ones)
    for side in (-1, 1):  # kidneys in a rim of perirenal fat, lower slices
        kidney = _ellipsoid(g, u(0.35, 0.6), 0.36 + u(-0.04, 0.04), side * (0.4 + u(-0.04, 0.04)),
                            u(0.6, 0.8), u(0.12, 0.16), u(0.08, 0.11))
        paint(kidney < 1.6, u(-90, -60))
        paint(kidney < 1, u(35, 45))
    paint(_ellipsoid(g, u(-0.8, -0.5), u(-0.1, 0.0), u(-0.55, -0.45),
                     u(0.8, 1.0), u(0.4, 0.48), u(0.3, 0.36)) < 1, u(55, 70))          # liver
    paint(_ellipsoid(g, u(-0.7, -0.4), u(0.25, 0.33), u(0.6, 0.66),
                     u(0.5, 0.7), u(0.17, 0.22), u(0.1, 0.13)) < 1, u(48, 58))         # spleen

    # spine: vertebral body (cortex + cancellous bone, discs every ~30 mm), canal and posterior arch
    vy, vr = 0.42 + u(-0.02, 0.02), u(0.11, 0.13)
    vert = _ellipse(g, vy, 0.0, vr, vr * 1.1)
    z_mm = (np.arange(nz, dtype=np.float32) * spacing[0]).reshape(nz, 1, 1)
    disc = ((z_mm + u(0, 30)) % 30.0) < 5.0
    canal_y = vy + vr + 0.06
    arch = _ellipse(g, canal_y, 0.0, 0.095, 0.1)
    canal = _ellipse(g, canal_y, 0.0, 0.05, 0.05)
    paint(arch < 1, u(550, 750))
    paint(canal < 1, u(15, 30))
    paint(vert < 1, u(650, 900))
    paint((vert < 0.7) & ~disc, u(380, 450))
    paint((vert < 1) & disc, u(80, 100))
    # ribs: small bony cross-sections just inside the fat, upper slices only
    for ang in np.deg2rad([-25.0, 30.0, 65.0, 115.0, 150.0, 205.0]) + u(-0.1, 0.1):
        ry, rx = cy_body + 0.82 * by * np.sin(ang), 0.82 * bx * np.cos(ang)
        paint((_ellipse(g, ry, rx, 0.04, 0.04) < 1) & (g.z < u(0.0, 0.3)), u(450, 650), clip=False)

    # vessels: tubes along z with a little drift
    def drift():
        return u(-0.03, 0.03) * g.z

    for cy, cx, r in ((0.2, 0.1, 0.075),     # aorta
                      (0.2, -0.18, 0.07),    # inferior vena cava
                      (0.05, 0.04, 0.035),   # superior mesenteric artery
                      (0.04, -0.07, 0.045)):  # superior mesenteric vein
        paint(_ellipse(g, cy + u(-0.02, 0.02) + drift(), cx + u(-0.02, 0.02) + drift(),
                       r * u(0.9, 1.1), r * u(0.9, 1.1)) < 1, u(150, 200))

    # pancreas: sampled centre line, densely enough that the tube is smooth at any resolution
    centre, radius = _pancreas_curve(rng)
    n_pts = int(np.clip(max(ny, nx), 48, 400))
    t = np.linspace(0.0, 1.0, n_pts)
    pts, rad = centre(t), radius(t)
    ext = np.array([_PANCREAS_KZ, 1.0, 1.0]) * rad.max()
    sl = _bbox(shape, pts.min(0) - ext, pts.max(0) + ext)
    field = _tube_field(_sub(g, sl), pts, rad, _PANCREAS_KZ)
    pancreas = (field < 1) & inner[sl]
    if not pancreas.any():  # tiny volumes: keep at least the voxel closest to the centre line
        pancreas.flat[np.argmin(field)] = True
    img[sl][pancreas] = u(90, 115)
    lab[sl][pancreas] = LABELS["pancreas"]

    # tumour: hypodense blob centred near the head/body centre line, cut to the inner part of the pancreas
    if with_tumour:
        tc = u(0.05, 0.7)
        c = centre(tc) + np.array([0.0, *rng.uniform(-0.3, 0.3, size=2) * radius(tc)])
        rt = radius(tc) * u(0.7, 1.0)
        blob = _ellipsoid(_sub(g, sl), c[0], c[1], c[2], rt * _PANCREAS_KZ, rt, rt * u(0.8, 1.2)) < 1
        tumour = blob & pancreas & (field < 0.8)  # keep a rim of pancreas around the tumour
        img[sl][tumour] = u(20, 40)
        lab[sl][tumour] = LABELS["tumour"]

    # partial-volume smoothing, then correlated noise
    img = gaussian_filter(img, sigma=(0.35, 0.6, 0.6), mode="nearest")
    noise = gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma=0.5, mode="wrap")
    noise *= np.float32(u(10, 18) / max(float(noise.std()), 1e-6))
    img += noise
    img = np.clip(np.rint(img), -1024, 3071).astype(np.int16)
    return img, lab


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


def _validate(dataset_id, name, num_cases, num_test_cases, seed, size_scale, spacing):
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
    try:
        size_scale = float(size_scale)
    except (TypeError, ValueError):
        raise ValueError(f"size_scale must be a number > 0, got {size_scale!r}") from None
    if not (math.isfinite(size_scale) and size_scale > 0):
        raise ValueError(f"size_scale must be a number > 0, got {size_scale!r}")
    try:
        spacing = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be three positive numbers (z, y, x), got {spacing!r}") from None
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive numbers (z, y, x), got {spacing!r}")
    return dataset_id, name, num_cases, num_test_cases, seed, size_scale, spacing


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
                 spacing=(2.5, 0.8, 0.8), overwrite: bool = False, verbose: bool = False) -> Path:
    """Write a synthetic pancreas-CT dataset in nnU-Net v2 raw format and return its folder.

    :param raw_dir: the nnUNet_raw folder (created if missing); the dataset goes to
        ``raw_dir/Dataset{dataset_id:03d}_{name}``
    :param num_cases: training cases (imagesTr/labelsTr), >= 2
    :param num_test_cases: test cases (imagesTs/labelsTs), case ids continue after the training ids
    :param seed: same seed and arguments -> byte-identical files
    :param size_scale: multiplies the case sizes (default z 20-28, y/x 56-72 voxels)
    :param spacing: voxel spacing in numpy (z, y, x) order, mm
    :param overwrite: replace an existing folder of the same name (only once the new one is complete)
    :raises DatasetExistsError: a folder ``Dataset{dataset_id:03d}_*`` exists (and is not the one to overwrite)
    :raises ValueError: invalid arguments
    :raises NotADirectoryError, PermissionError: raw_dir cannot be used
    """
    dataset_id, name, num_cases, num_test_cases, seed, size_scale, spacing = _validate(
        dataset_id, name, num_cases, num_test_cases, seed, size_scale, spacing)
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
        _write_dataset(tmp, name, num_cases, num_test_cases, seed, size_scale, spacing, verbose)
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


def _write_dataset(folder: Path, name, num_cases, num_test_cases, seed, size_scale, spacing, verbose) -> None:
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir()
    total = num_cases + num_test_cases

    # tumour in roughly half the cases, but always in some and (when possible) not in all training cases
    flags = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,))).random(total) < 0.5
    if not flags[:num_cases].any():
        flags[0] = True
    if flags[:num_cases].all():
        flags[num_cases - 1] = False

    for i in range(total):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, i)))
        shape = _draw_shape(rng, size_scale)
        img, lab = _draw_case(rng, shape, spacing, bool(flags[i]))
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
    parser.add_argument("--overwrite", action="store_true",
                        help="[OPTIONAL] Replace an existing dataset folder of the same name. Without it an "
                             "existing DatasetXXX_* folder with this id is an error.")


def make_dataset_from_args(args) -> Path:
    """Run :func:`make_dataset` with the options added by :func:`add_make_dataset_arguments`."""
    return make_dataset(args.output, dataset_id=args.id, name=args.name, num_cases=args.cases,
                        num_test_cases=args.test_cases, seed=args.seed, size_scale=args.size_scale,
                        spacing=tuple(args.spacing), overwrite=args.overwrite,
                        verbose=getattr(args, "verbose", False))
