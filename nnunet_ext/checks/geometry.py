"""The images of a case and a prediction against its reference, before any prediction or scoring.

* **channels**: a case must have exactly the model's channel files ``CASE_0000 .. CASE_{C-1}`` (an extra
  ``_0001`` for a one-channel model is an error, not ignored), of one geometry; an RGB natural image holds its
  channels in ``_0000``, as nnU-Net's NaturalImage2DIO reads it.
* **dimensionality**: every file is 2D or 3D, one file per channel (4D files are refused); a 3D configuration
  takes 3D images only, a 2D one takes 2D or 3D (slice by slice) images.
* **geometry of a prediction** (evaluation): size, spacing, origin and direction must equal its reference's within
  :data:`SPACING_RTOL`, :data:`ORIGIN_ATOL_MM` and :data:`DIRECTION_ATOL`.

Each file is first read whole by :func:`nnunet_ext.checks.files.inspect_file` (complete, finite).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from nnunet_ext.checks.files import NATURAL_ENDINGS, FileInfo, check_finite, inspect_file
from nnunet_ext.errors import UserError

#: relative tolerance on each spacing entry of a prediction vs its reference (also between channel files)
SPACING_RTOL = 1e-3
#: tolerance on each origin coordinate, in mm (NIfTI stores the origin as float32: ~1e-5 mm round-off at 300 mm)
ORIGIN_ATOL_MM = 1e-2
#: tolerance on each entry of the direction cosine matrix
DIRECTION_ATOL = 1e-3
_CASE_RE = re.compile(r"^(.+)_(\d{4})$")


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
        if missing and file_ending.lower().endswith(NATURAL_ENDINGS) and list(ch) == [0]:
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
