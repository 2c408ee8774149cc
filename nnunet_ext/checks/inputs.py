"""Input checks before any prediction or scoring, and ``nnunet-ext check-inputs``.

Every image or segmentation file that ``predict-c2f``, ``evaluate`` or ``benchmark`` uses is checked here first, so
that a broken file is a one-line :class:`~nnunet_ext.errors.UserError` naming it instead of a silent result:

* **read completely**: SimpleITK reads a truncated ``.nii.gz`` (a broken download) without complaint and fills the
  missing voxels with zeros. A gzip file is therefore decompressed here to its end-of-stream marker, and a NIfTI
  file (``.nii``/``.nii.gz``, NIfTI-1 or -2) must hold at least ``vox_offset + prod(dim) * bitpix / 8`` bytes, as
  its header says. Other formats are read completely with SimpleITK.
* **finite**: NaN/Inf voxels are an error naming the file and their count (counted while streaming a NIfTI file,
  from the array otherwise). There is no silent repair; clean such an image yourself.
* **channels**: a case must have exactly the model's channel files ``CASE_0000 .. CASE_{C-1}`` (an extra
  ``_0001`` for a one-channel model is an error, not ignored), of one geometry.
* **dimensionality**: every file is 2D or 3D, one file per channel (4D files are refused); a 3D configuration
  takes 3D images only, a 2D one takes 2D or 3D (slice by slice) images.
* **geometry of a prediction** (evaluation): size, spacing, origin and direction must equal its reference's within
  :data:`SPACING_RTOL`, :data:`ORIGIN_ATOL_MM` and :data:`DIRECTION_ATOL`.

Stock ``nnUNetv2_predict`` has none of these checks (it predicts truncated or NaN images silently); run
``nnunet-ext check-inputs -i FOLDER -d DATASET -c CONFIGURATION`` before it.

The result of a file's check is cached per (path, size, modification time), so a file checked twice in one
process (``benchmark`` checks its prediction folders up front and ``evaluate`` again) is read once.
"""
from __future__ import annotations

import functools
import gzip
import json
import math
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from nnunet_ext.errors import UserError

#: relative tolerance on each spacing entry of a prediction vs its reference (also between channel files)
SPACING_RTOL = 1e-3
#: tolerance on each origin coordinate, in mm (NIfTI stores the origin as float32: ~1e-5 mm round-off at 300 mm)
ORIGIN_ATOL_MM = 1e-2
#: tolerance on each entry of the direction cosine matrix
DIRECTION_ATOL = 1e-3
_CHUNK = 1 << 23  # 8 MiB of decompressed data at a time
#: 2D natural images (nnU-Net's NaturalImage2DIO): an RGB file holds several channels
_NATURAL_ENDINGS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")

# NIfTI datatype code -> numpy dtype of one stored number (complex types: their float parts); None: not floating
_NIFTI_FLOAT = {16: "f4", 64: "f8", 32: "f4", 1792: "f8"}


@dataclass(frozen=True)
class FileInfo:
    """What the checks know of one file (SimpleITK's axis order x, y, z)."""
    path: str
    ndim: int
    size: Tuple[int, ...]
    spacing: Tuple[float, ...]
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]
    nonfinite: int
    components: int = 1  # values per voxel (an RGB .png: 3, nnU-Net's NaturalImage2DIO takes them as channels)


# ------------------------------------------------------------------------------------------------ one file
def _nifti_header(head: bytes, path: str) -> Optional[Tuple[int, int, int, str]]:
    """(byte offset of the voxel data, its length in bytes, NIfTI datatype, byte order) from the first bytes of a
    NIfTI file, or None if it is not a single-file NIfTI (e.g. an .hdr/.img pair: left to SimpleITK)."""
    if len(head) < 348:
        raise UserError(f"{path}: file is truncated or not NIfTI (header incomplete: {len(head)} bytes)")
    for bo in "<>":
        sizeof_hdr = struct.unpack(bo + "i", head[:4])[0]
        if sizeof_hdr in (348, 540):
            break
    else:
        raise UserError(f"{path}: not a NIfTI file (header size field {struct.unpack('<i', head[:4])[0]})")
    if sizeof_hdr == 348:
        if head[344:347] != b"n+1":
            return None
        dim = struct.unpack(bo + "8h", head[40:56])
        datatype, bitpix = struct.unpack(bo + "2h", head[70:74])
        vox_offset = int(struct.unpack(bo + "f", head[108:112])[0])
    else:
        if len(head) < 540:
            raise UserError(f"{path}: file is truncated (NIfTI-2 header incomplete: {len(head)} bytes)")
        if head[4:7] != b"n+2":
            return None
        datatype, bitpix = struct.unpack(bo + "2h", head[12:16])
        dim = struct.unpack(bo + "8q", head[16:80])
        vox_offset = int(struct.unpack(bo + "q", head[168:176])[0])
    n = int(dim[0])
    if not 1 <= n <= 7 or any(d < 0 for d in dim[1:n + 1]) or bitpix <= 0 or vox_offset < sizeof_hdr:
        raise UserError(f"{path}: corrupt NIfTI header (dim {list(dim)}, bitpix {bitpix}, vox_offset {vox_offset})")
    voxels = int(np.prod([int(d) for d in dim[1:n + 1]], dtype=np.int64))
    return vox_offset, voxels * int(bitpix) // 8, int(datatype), bo


def _stream_check(path: str, count_nonfinite: bool) -> Optional[int]:
    """Read ``path`` to its end (a gzip file to its end-of-stream marker); for a NIfTI file check its length
    against its header and count the non-finite voxels (floating-point types). Returns that count, or None where
    it was not counted here (not NIfTI, or a type this does not count)."""
    with open(path, "rb") as fh:
        is_gzip = fh.read(2) == b"\x1f\x8b"
    is_nifti = path.endswith((".nii", ".nii.gz"))
    if not (is_gzip or is_nifti):
        return None
    hdr, dtype, nonfinite, total, carry = None, None, 0, 0, b""
    try:
        with (gzip.open if is_gzip else open)(path, "rb") as fh:
            chunk = fh.read(540)
            if is_nifti:
                hdr = _nifti_header(chunk, path)
                kind = _NIFTI_FLOAT.get(hdr[2]) if hdr and count_nonfinite else None
                dtype = np.dtype(hdr[3] + kind) if kind else None
            while chunk:
                if dtype is not None:  # the part of this chunk inside [vox_offset, vox_offset + nbytes)
                    lo, hi = max(hdr[0] - total, 0), min(hdr[0] + hdr[1] - total, len(chunk))
                    if hi > lo:
                        buf = carry + chunk[lo:hi]
                        usable = len(buf) - len(buf) % dtype.itemsize
                        nonfinite += int(np.count_nonzero(~np.isfinite(np.frombuffer(buf[:usable], dtype))))
                        carry = buf[usable:]
                total += len(chunk)
                chunk = fh.read(_CHUNK)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        why = str(e).splitlines()[0] if str(e) else "unexpected end of data"
        raise UserError(f"{path}: file is truncated or corrupt ({type(e).__name__}: {why})") from None
    if hdr is not None and total < hdr[0] + hdr[1]:
        raise UserError(f"{path}: file is truncated: {total} bytes, its NIfTI header needs {hdr[0] + hdr[1]}")
    if hdr is None or not count_nonfinite:
        return None
    # integer types cannot hold NaN/Inf; float128/complex256 (1536, 2048) are left to SimpleITK
    return nonfinite if dtype is not None else (0 if hdr[2] not in (1536, 2048) else None)


def _sitk_info(path: str, count_nonfinite: bool, counted: Optional[int]) -> FileInfo:
    import SimpleITK as sitk

    r = sitk.ImageFileReader()
    r.SetFileName(path)
    try:
        r.ReadImageInformation()
        nonfinite = counted
        if nonfinite is None and count_nonfinite:
            img = r.Execute()
            arr = sitk.GetArrayViewFromImage(img)
            nonfinite = int(np.count_nonzero(~np.isfinite(arr))) if arr.dtype.kind in "fc" else 0
    except RuntimeError as e:
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        raise UserError(f"{path}: cannot read ({lines[-1].strip() if lines else 'unreadable'})") from None
    size = tuple(int(s) for s in r.GetSize())
    n_comp = r.GetNumberOfComponents()
    ndim = r.GetDimension()
    natural = path.lower().endswith(_NATURAL_ENDINGS)
    if ndim == 3 and size[2] == 1 and natural:
        ndim = 2
    if n_comp > 1 and not natural:
        ndim += 1  # a vector image: one more axis than nnU-Net's one-file-per-channel layout takes
    return FileInfo(path, ndim, size, tuple(r.GetSpacing()), tuple(r.GetOrigin()), tuple(r.GetDirection()),
                    int(nonfinite or 0), n_comp if natural else 1)


@functools.lru_cache(maxsize=4096)
def _inspect_cached(path: str, st_size: int, st_mtime_ns: int, count_nonfinite: bool) -> FileInfo:
    counted = _stream_check(path, count_nonfinite)
    return _sitk_info(path, count_nonfinite, counted)


def inspect_file(path, count_nonfinite: bool = True) -> FileInfo:
    """Read ``path`` completely and return its geometry and number of non-finite voxels. ``UserError`` (naming the
    file) if it is missing, empty, truncated, corrupt or unreadable."""
    path = str(path)
    try:
        st = os.stat(path)
    except OSError:
        raise UserError(f"{path}: file not found") from None
    if not os.path.isfile(path):
        raise UserError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise UserError(f"{path}: file is empty")
    return _inspect_cached(os.path.abspath(path), st.st_size, st.st_mtime_ns, count_nonfinite)


def check_finite(info: FileInfo) -> None:
    if info.nonfinite:
        raise UserError(f"{info.path}: {info.nonfinite} non-finite (NaN/Inf) voxel(s); nnU-Net would normalise "
                        f"and predict them silently: fix the image first")


def geometry_difference(a: FileInfo, b: FileInfo) -> Optional[str]:
    """None if ``a`` and ``b`` have the same grid within the tolerances, else what differs (the first thing)."""
    if a.size != b.size:
        return f"size {list(a.size)} vs {list(b.size)}"
    sa, sb = np.asarray(a.spacing), np.asarray(b.spacing)
    if not np.allclose(sa, sb, rtol=SPACING_RTOL, atol=0):
        return f"spacing {[round(v, 4) for v in a.spacing]} vs {[round(v, 4) for v in b.spacing]}"
    d = float(np.max(np.abs(np.asarray(a.origin) - np.asarray(b.origin))))
    if d > ORIGIN_ATOL_MM:
        return (f"origin {[round(v, 3) for v in a.origin]} vs {[round(v, 3) for v in b.origin]} "
                f"({d:.3g} mm apart, tolerance {ORIGIN_ATOL_MM:g} mm)")
    d = float(np.max(np.abs(np.asarray(a.direction) - np.asarray(b.direction))))
    if d > DIRECTION_ATOL:
        return (f"direction {[round(v, 4) for v in a.direction]} vs {[round(v, 4) for v in b.direction]} "
                f"(max difference {d:.3g}, tolerance {DIRECTION_ATOL:g})")
    return None


# ------------------------------------------------------------------------------------------------ prediction inputs
_CASE_RE = re.compile(r"^(.+)_(\d{4})$")


def list_case_files(folder, file_ending: str, num_channels: int) -> Dict[str, List[str]]:
    """``{case: [channel files]}`` of an nnU-Net raw image folder; UserError for a missing, misnamed or extra
    channel file (a case must have exactly ``CASE_0000 .. CASE_{num_channels-1}``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"input folder {folder} does not exist" if not folder.exists()
                        else f"input {folder} is not a folder")
    cases: Dict[str, Dict[int, str]] = {}
    for p in sorted(folder.iterdir()):
        if not p.name.endswith(file_ending) or not p.is_file():
            continue
        m = _CASE_RE.match(p.name[: -len(file_ending)])
        if not m:
            raise UserError(f"input file {p} is not named CASE_XXXX{file_ending} (XXXX: 4-digit channel)")
        cases.setdefault(m.group(1), {})[int(m.group(2))] = str(p)
    if not cases:
        raise UserError(f"input folder {folder} has no images ending in {file_ending}")
    out = {}
    for case, ch in cases.items():
        extra = sorted(c for c in ch if c >= num_channels)
        if extra:
            raise UserError(f"{ch[extra[0]]}: channel {extra[0]:04d}, but the model takes {num_channels} channel(s) "
                            f"(_0000{f'.._{num_channels - 1:04d}' if num_channels > 1 else ''} per case)")
        missing = [c for c in range(num_channels) if c not in ch]
        if missing and file_ending.lower().endswith(_NATURAL_ENDINGS) and list(ch) == [0]:
            out[case] = [ch[0]]  # an RGB image holds its channels (checked by check_case_files)
            continue
        if missing:
            raise UserError(f"case {case}: missing channel file {folder / f'{case}_{missing[0]:04d}{file_ending}'}")
        out[case] = [ch[c] for c in range(num_channels)]
    return out


def model_ndim(plans: dict, configuration: str) -> int:
    """2 or 3: the length of ``configuration``'s ``patch_size``, following ``inherits_from`` as nnU-Net does."""
    confs, c, seen = plans.get("configurations", {}), configuration, []
    while c in confs and c not in seen:
        seen.append(c)
        if "patch_size" in confs[c]:
            return len(confs[c]["patch_size"])
        c = confs[c].get("inherits_from")
    raise UserError(f"configuration {configuration!r} of plans {plans.get('plans_name', '?')}: no patch_size "
                    f"(configurations: {', '.join(confs)})")


def check_case_files(files: Sequence[str], ndim: int, configuration: str = "", num_channels: Optional[int] = None) \
        -> List[FileInfo]:
    """Every channel file of one case: complete, finite, 2D/3D as the model takes, one geometry, and (where given)
    ``num_channels`` values per voxel over all files."""
    infos = [inspect_file(f) for f in files]
    if num_channels is not None and sum(i.components for i in infos) != num_channels:
        raise UserError(f"{infos[0].path}: {sum(i.components for i in infos)} channel(s) in "
                        f"{len(infos)} file(s), but the model takes {num_channels}")
    for info in infos:
        if info.ndim > 3 or info.ndim < 2:
            raise UserError(f"{info.path}: {info.ndim}D image (size {list(info.size)}); the model takes "
                            f"{ndim}D images, one file per channel")
        if ndim == 3 and info.ndim != 3:
            raise UserError(f"{info.path}: {info.ndim}D image (size {list(info.size)}); the 3D configuration "
                            f"{configuration or ''} takes 3D images".replace("  ", " "))
        check_finite(info)
    for info in infos[1:]:
        diff = geometry_difference(info, infos[0])
        if diff:
            raise UserError(f"{info.path}: channel files of one case differ from {infos[0].path}: {diff}")
    return infos


def check_prediction_inputs(folder, *models) -> Dict[str, List[str]]:
    """Before any prediction: the case files of ``folder`` for each model (objects with ``dataset_json``, ``plans``
    and ``configuration``, e.g. predict-c2f's ``ModelRef``). Returns ``{case: [channel files]}``."""
    if not models:
        raise ValueError("check_prediction_inputs needs at least one model")
    dj = models[0].dataset_json
    channels = dj.get("channel_names", dj.get("modality", {}))
    cases = list_case_files(folder, dj["file_ending"], len(channels))
    dims = {(m.configuration, model_ndim(m.plans, m.configuration)) for m in models}
    ndim = max(d for _, d in dims)
    conf = next(c for c, d in dims if d == ndim)
    for files in cases.values():
        check_case_files(files, ndim, conf, len(channels))
    return cases


# ------------------------------------------------------------------------------------------------ evaluation inputs
def check_evaluation_pairs(pairs: Iterable[Tuple[str, str]]) -> None:
    """Before any scoring: each (reference, prediction) pair read completely, finite, and of one grid (size,
    spacing, origin, direction within the tolerances). UserError naming the prediction and the difference."""
    for ref, pred in pairs:
        a, b = inspect_file(ref), inspect_file(pred)
        check_finite(a)
        check_finite(b)
        diff = geometry_difference(b, a)
        if diff:
            raise UserError(f"{pred}: differs from its reference {ref}: {diff}")


def check_evaluation_folders(reference_folder, prediction_folders: Iterable, file_ending: str) -> int:
    """:func:`check_evaluation_pairs` for every prediction of each folder that has a reference (same file name);
    returns the number of pairs checked (missing references/predictions are reported by the evaluation)."""
    n = 0
    if not file_ending:
        return n  # no file ending known: the evaluation reports the dataset.json
    ref = Path(reference_folder)
    for folder in prediction_folders:
        folder = Path(folder)
        preds = sorted(p.name for p in folder.iterdir() if p.name.endswith(file_ending) and p.is_file())
        pairs = [(str(ref / f), str(folder / f)) for f in preds if (ref / f).is_file()]
        check_evaluation_pairs(pairs)
        n += len(pairs)
    return n


# ------------------------------------------------------------------------------------------------ arguments
def parse_folds(values: Optional[Sequence[str]], flag: str = "-f") -> Optional[List]:
    """nnU-Net's folds: non-negative integers or ``all``; UserError naming the bad value."""
    if values is None:
        return None
    out = []
    for v in values:
        if v == "all":
            out.append(v)
        elif str(v).isdigit():
            out.append(int(v))
        else:
            raise UserError(f"{flag} {v!r}: a fold is a non-negative integer or 'all'")
    return out


def check_output_path(path, what: str = "output", folder: bool = True) -> Path:
    """UserError unless ``path`` (a folder, or a file if ``folder`` is False) can be created: no existing
    component of it may be a regular file, and the nearest existing parent must be writable."""
    p = Path(path)
    if p.exists():
        if folder and not p.is_dir():
            raise UserError(f"{what} {p} exists and is not a folder")
        if not folder and p.is_dir():
            raise UserError(f"{what} {p} is a folder")
        return p
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{what} {p} cannot be created: {parent} is a file")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{what} {p} cannot be created: {parent} is not writable")
    return p


def check_c2f_arguments(folds, output_folder) -> Optional[List]:
    """predict-c2f's arguments checked before anything else: the folds (returned parsed) and the output folder."""
    check_output_path(output_folder, "output folder")
    return parse_folds(folds)


def check_train_args(argv: Sequence[str]) -> None:
    """Arguments of ``nnUNetv2_train DATASET CONFIGURATION FOLD ...`` that nnU-Net turns into tracebacks: the
    dataset, the fold, the configuration (when the plans exist) and the trainer name. UserError naming the value."""
    if not argv or any(a in ("-h", "--help") for a in argv):
        return
    ns = _known_args(argv, {"-tr": "nnUNetTrainer", "-p": "nnUNetPlans", "-num_gpus": "1", "-device": "cuda"},
                     ("dataset", "configuration", "fold"))
    if ns is None or ns.fold is None:
        return  # nnU-Net's own argparse reports the missing positionals
    parse_folds([ns.fold], "FOLD")
    _number(ns.num_gpus, "-num_gpus", int, 1)
    if ns.device not in ("cpu", "cuda", "mps"):
        raise UserError(f"-device {ns.device!r}: expected cpu, cuda or mps")
    _check_trainer_name(ns.tr)
    from nnunet_ext.errors import dataset_name, preprocessed_file

    ds = dataset_name(ns.dataset)
    plans_file = preprocessed_file(ds, f"{ns.p}.json")
    try:
        confs = json.loads(plans_file.read_text()).get("configurations", {})
    except (OSError, ValueError) as e:
        raise UserError(f"{plans_file}: cannot read ({e})") from None
    if ns.configuration not in confs:
        raise UserError(f"configuration {ns.configuration!r} does not exist in {plans_file} "
                        f"(has: {', '.join(confs)})")


def _number(value, flag: str, kind=float, lo=None, hi=None, lo_open=False):
    try:
        v = kind(value)
    except (TypeError, ValueError):
        raise UserError(f"{flag} {value!r}: expected {'an integer' if kind is int else 'a number'}") from None
    if (kind is float and not math.isfinite(v)) or (lo is not None and (v <= lo if lo_open else v < lo)) \
            or (hi is not None and v > hi):
        rng = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}{']' if hi is not None else ')'}"
        raise UserError(f"{flag} {value!r}: must be in {rng}")
    return v


def _known_args(argv: Sequence[str], spec: Dict[str, Optional[str]], positionals: Sequence[str] = ()):
    import argparse

    p = argparse.ArgumentParser(add_help=False)
    for name in positionals:
        p.add_argument(name, nargs="?")
    for flag, default in spec.items():
        p.add_argument(flag, default=default, nargs="+" if flag == "-f" else None)
    try:
        ns, _ = p.parse_known_args(list(argv))
    except SystemExit:  # e.g. a flag without its value: nnU-Net's own argparse reports it
        return None
    return ns


def check_predict_args(argv: Sequence[str]) -> None:
    """``nnUNetv2_predict``'s arguments that nnU-Net turns into tracebacks or writes half an output for (folds,
    numbers, -i, -o, -device, trainer, dataset, model folder), then :func:`check_prediction_inputs` on -i with the
    model's dataset.json and plans (so ``nnunet-ext predict`` is a checked path; stock ``nnUNetv2_predict`` is not)."""
    if not argv or any(a in ("-h", "--help") for a in argv):
        return
    ns = _known_args(argv, {"-i": None, "-o": None, "-d": None, "-p": "nnUNetPlans", "-tr": "nnUNetTrainer",
                            "-c": None, "-f": None, "-chk": "checkpoint_final.pth", "-step_size": "0.5",
                            "-npp": "1", "-nps": "1", "-num_parts": "1", "-part_id": "0", "-device": "cuda"})
    if ns is None or None in (ns.i, ns.o, ns.d, ns.c):
        return  # nnU-Net's own argparse reports the missing required arguments
    folds = parse_folds(ns.f) if ns.f is not None else [0, 1, 2, 3, 4]
    _number(ns.step_size, "-step_size", float, 0, 1, lo_open=True)
    for flag in ("npp", "nps"):
        _number(getattr(ns, flag), f"-{flag}", int, 1)
    parts = _number(ns.num_parts, "-num_parts", int, 1)
    _number(ns.part_id, "-part_id", int, 0, parts - 1)
    if ns.device not in ("cpu", "cuda", "mps"):
        raise UserError(f"-device {ns.device!r}: expected cpu, cuda or mps")
    if not Path(ns.i).is_dir():
        raise UserError(f"-i {ns.i}: input folder does not exist")
    check_output_path(ns.o, "-o output folder")
    _check_trainer_name(ns.tr)
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    from nnunet_ext.errors import dataset_name

    ds = dataset_name(ns.d)
    if not os.environ.get("nnUNet_results"):
        raise UserError("nnUNet_results is not set: it must point at the folder with the trained models")
    folder = Path(get_output_folder(ds, ns.tr, ns.p, ns.c))
    if not folder.is_dir():
        raise UserError(f"model folder {folder} does not exist (check -d, -tr, -p, -c)")
    for f in folds:
        if not (folder / f"fold_{f}" / ns.chk).is_file():
            raise UserError(f"fold {f}: {folder / f'fold_{f}' / ns.chk} does not exist")
    from types import SimpleNamespace

    jsons = {}
    for name in ("dataset.json", "plans.json"):
        try:
            jsons[name] = json.loads((folder / name).read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{folder / name}: cannot read ({e})") from None
    check_prediction_inputs(ns.i, SimpleNamespace(dataset_json=jsons["dataset.json"], plans=jsons["plans.json"],
                                                  configuration=ns.c))


def _check_trainer_name(name: str) -> None:
    import contextlib
    import io
    import warnings

    from nnunet_ext.lookup import register_ext_trainers, trainer_names

    register_ext_trainers()
    try:  # nnU-Net's lookup prints its search to stdout, and its imports warn: only our one line is shown
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

            recursive_find_trainer_class_by_name(name)
    except RuntimeError:
        raise UserError(f"trainer {name!r} not found (nnU-Net's or nnunet-ext's). Trainers of nnunet-ext: "
                        f"{', '.join(trainer_names())} (and <Trainer>_<N>epochs[_<M>iters], N, M >= 1)") from None


# ------------------------------------------------------------------------------------------------ CLI
def _model_from_dataset(dataset, configuration: str, plans_name: str):
    from types import SimpleNamespace

    from nnunet_ext.errors import dataset_name, preprocessed_file

    ds = dataset_name(dataset)
    jsons, files = {}, {}
    for name, filename in (("plans", f"{plans_name}.json"), ("dataset.json", "dataset.json")):
        f = files[name] = preprocessed_file(ds, filename, name)
        try:
            jsons[name] = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{f}: cannot read ({e})") from None
    confs = jsons["plans"].get("configurations", {})
    if configuration not in confs:
        raise UserError(f"configuration {configuration!r} does not exist in {files['plans']} "
                        f"(has: {', '.join(confs)})")
    return SimpleNamespace(dataset_json=jsons["dataset.json"], plans=jsons["plans"], configuration=configuration)


def cmd_check_inputs(args) -> int:
    if args.reference is not None:
        if not Path(args.reference).is_dir():
            raise UserError(f"reference folder {args.reference} does not exist")
        if not Path(args.i).is_dir():
            raise UserError(f"prediction folder {args.i} does not exist")
        ending = args.file_ending or ".nii.gz"
        n = check_evaluation_folders(args.reference, [args.i], ending)
        if not n:
            raise UserError(f"{args.i}: no prediction ending in {ending} has a reference in {args.reference}")
        print(f"OK: {n} prediction(s) in {args.i} match their references in {args.reference}")
        return 0
    if args.d is not None:
        if args.channels is not None or args.file_ending is not None:
            raise UserError("-d/-c and --channels/--file-ending are exclusive")
        if not args.c:
            raise UserError("-d needs -c CONFIGURATION")
        model = _model_from_dataset(args.d, args.c, args.p)
        cases = check_prediction_inputs(args.i, model)
    else:
        if args.channels is None or args.channels < 1:
            raise UserError("give -d DATASET -c CONFIGURATION, or --channels N (>= 1) [--file-ending E] [--dim 2|3]")
        cases = list_case_files(args.i, args.file_ending or ".nii.gz", args.channels)
        for files in cases.values():
            check_case_files(files, args.dim, num_channels=args.channels)
    print(f"OK: {len(cases)} case(s), {sum(len(v) for v in cases.values())} file(s) in {args.i} read completely: "
          f"finite, channels and dimensionality as the model takes")
    return 0


def register_cli(subparsers) -> None:
    s = subparsers.add_parser(
        "check-inputs", help="check an input folder (truncated files, NaN/Inf, channels, 4D) before nnUNetv2_predict",
        description="Reads every file completely and checks what predict-c2f and evaluate check before they start: "
                    "truncated/corrupt files (SimpleITK zero-fills a truncated .nii.gz silently), non-finite "
                    "voxels, exactly the model's channel files per case, 2D/3D as the model takes. With "
                    "--reference: each prediction's size, spacing, origin and direction against its reference. "
                    "Stock nnUNetv2_predict does none of this; run this before it.")
    s.add_argument("-i", required=True, help="input folder (CASE_XXXX<file_ending>), or predictions with --reference")
    s.add_argument("-d", default=None, help="dataset name or id (channels, file ending from nnUNet_preprocessed)")
    s.add_argument("-c", default=None, help="configuration of the model, e.g. 3d_fullres")
    s.add_argument("-p", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    s.add_argument("--channels", type=int, default=None, help="without -d: channel files per case")
    s.add_argument("--file-ending", default=None, help="without -d: file ending (default .nii.gz)")
    s.add_argument("--dim", type=int, choices=(2, 3), default=3, help="without -d: the model's dimensionality")
    s.add_argument("--reference", default=None, metavar="GT_FOLDER",
                   help="check -i as predictions against the reference segmentations of GT_FOLDER")
    s.set_defaults(func=cmd_check_inputs)
