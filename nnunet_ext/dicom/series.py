"""DICOM series of a folder (searched recursively) as cases: found, checked and read as HU volumes.

* **found**: a file is DICOM if it carries the ``DICM`` marker at byte 128 or ends in ``.dcm``; its header is read
  with pydicom (pixel data deferred). Files are grouped by ``SeriesInstanceUID``. Localizers (``ImageType``
  LOCALIZER), non-CT series (``Modality`` other than CT), one-slice series and DICOMDIR files are skipped, each
  with one line.
* **checked**, for every series before anything is read or written (:func:`scan_folder`): one size, pixel spacing
  and orientation for all slices; slice positions along the normal ``row x column`` of ``ImageOrientationPatient``
  evenly spaced (a missing slice or uneven spacing names the gap and where it is); every file complete (the pixel
  data its header announces is present); a compressed transfer syntax decoded on one slice by SimpleITK/GDCM.
* **sorted** by ``ImagePositionPatient . normal``, never by file name or ``InstanceNumber``.
* **read** (:func:`read_series`) by SimpleITK's GDCM series reader over the sorted files: rescale slope and
  intercept applied (HU), origin, spacing and direction as SimpleITK reads them; int16 where the headers' stored
  range (``BitsStored``, ``PixelRepresentation``, slope, intercept) fits it, else GDCM's type (int32 for unsigned
  16-bit with a negative intercept).
* **named** ``<PatientID>_<SeriesNumber>``; where two series would share a name, ``<PatientID>_<StudyDate>_
  <SeriesNumber>``, then ``..._<SeriesTime>``; if they still agree, UserError.

Every failure is a one-line :class:`~nnunet_ext.errors.UserError` naming the series (its folder) or the file.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunet_ext.errors import UserError

#: relative tolerance on the distance between neighbouring slices (vs the series' median distance)
SPACING_RTOL = 0.01
#: absolute tolerance (mm) on that distance, for the rounding of positions in the headers
SPACING_ATOL_MM = 0.01
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
_DICOMDIR = "1.2.840.10008.1.3.10"


@dataclass
class Series:
    """One CT series: its files sorted along the slice normal and what the case name is made of."""
    uid: str
    folder: str  # the common folder of its files (for messages)
    files: List[str]
    positions: np.ndarray  # mm along the slice normal, ascending
    patient_id: str
    series_number: str
    study_date: str
    series_time: str
    description: str
    transfer_syntax: str
    case: str = ""
    headers: list = field(default_factory=list, repr=False)  # pydicom datasets without pixel data, sorted


def is_dicom_file(path: Path) -> bool:
    """``.dcm`` or the ``DICM`` marker at byte 128."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def find_dicom_files(folder) -> List[Path]:
    """The DICOM files under ``folder``, recursively, in sorted path order."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        out.extend(p for p in (Path(root) / f for f in sorted(files)) if p.is_file() and is_dicom_file(p))
    return out


def _read_header(path: Path):
    import pydicom

    try:
        ds = pydicom.dcmread(path, defer_size=256)
    except Exception as e:  # noqa: BLE001 - pydicom raises many kinds on a broken file
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: corrupt or truncated DICOM file ({why[:160]})") from None
    return ds


def _check_complete(path: Path, ds) -> None:
    """UserError unless the pixel data the header announces is in the file."""
    el = ds.get_item("PixelData", keep_deferred=True) if "PixelData" in ds else None
    if el is None:
        raise UserError(f"{path}: corrupt or truncated DICOM file (no pixel data)")
    length = getattr(el, "length", None)
    tell = getattr(el, "value_tell", None)
    if tell is not None and length is not None and length != 0xFFFFFFFF:
        size = os.path.getsize(path)
        if tell + length > size:
            raise UserError(f"{path}: truncated DICOM file ({size} bytes, its pixel data needs {tell + length})")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        need = int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated) // 8 * int(ds.get("SamplesPerPixel", 1)) * frames
        if length < need:
            raise UserError(f"{path}: truncated DICOM file (pixel data {length} bytes, {ds.Rows}x{ds.Columns} "
                            f"slice needs {need})")


def _text(ds, keyword: str, default: str = "") -> str:
    v = ds.get(keyword, default)
    return str(v).strip() if v is not None else default


def _skip_reason(ds) -> Optional[str]:
    if str(getattr(ds.get("file_meta", {}), "MediaStorageSOPClassUID", "")) == _DICOMDIR:
        return "DICOMDIR, not an image"
    modality = _text(ds, "Modality")
    if modality != "CT":
        return f"modality {modality or 'missing'}, not CT"
    if "LOCALIZER" in [str(t).upper() for t in (ds.get("ImageType") or [])]:
        return "localizer"
    return None


def _geometry(path: Path, ds) -> Tuple[Tuple[int, int], Tuple[float, ...], Tuple[float, ...], np.ndarray]:
    try:
        size = (int(ds.Rows), int(ds.Columns))
        spacing = tuple(round(float(v), 4) for v in ds.PixelSpacing)
        iop = tuple(round(float(v), 4) for v in ds.ImageOrientationPatient)
        ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
    except (AttributeError, TypeError, ValueError):
        raise UserError(f"{path}: no image geometry (Rows, Columns, PixelSpacing, ImageOrientationPatient, "
                        f"ImagePositionPatient)") from None
    if len(iop) != 6 or len(ipp) != 3 or len(spacing) != 2:
        raise UserError(f"{path}: malformed ImageOrientationPatient/ImagePositionPatient/PixelSpacing")
    return size, spacing, iop, ipp


def _check_spacing(folder: str, files: List[str], pos: np.ndarray) -> None:
    d = np.diff(pos)
    k0 = int(np.argmin(d))
    if d[k0] <= SPACING_ATOL_MM:
        raise UserError(f"series {folder}: two slices at {pos[k0]:.2f} mm along the slice normal "
                        f"({files[k0]}, {files[k0 + 1]})")
    ref = float(np.median(d))
    bad = np.nonzero(np.abs(d - ref) > max(SPACING_ATOL_MM, SPACING_RTOL * ref))[0]
    if bad.size:
        k = int(bad[0])
        what = (f"missing slice(s): gap of {d[k]:.2f} mm" if d[k] > 1.5 * ref
                else f"uneven slice spacing: {d[k]:.2f} mm")
        raise UserError(f"series {folder}: {what} between slices {k} and {k + 1} of {len(files)} at "
                        f"{pos[k]:.2f} and {pos[k + 1]:.2f} mm along the slice normal (spacing {ref:.2f} mm "
                        f"elsewhere; files {Path(files[k]).name}, {Path(files[k + 1]).name})")


def _build_series(uid: str, items: List[Tuple[Path, object]]) -> Series:
    folder = os.path.commonpath([str(p.parent) for p, _ in items])
    geo = [_geometry(p, ds) for p, ds in items]
    for what, idx in (("sizes", 0), ("pixel spacings", 1), ("orientations", 2)):
        first = geo[0][idx]
        for (p, _), g in zip(items, geo):
            if g[idx] != first:
                fmt = (lambda v: "x".join(map(str, v))) if idx == 0 else (lambda v: str(list(v)))
                raise UserError(f"series {folder}: slices of different {what}: {fmt(first)} ({items[0][0]}) "
                                f"and {fmt(g[idx])} ({p})")
    iop = np.asarray(geo[0][2], dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    proj = np.asarray([g[3] @ normal for g in geo])
    order = np.argsort(proj, kind="stable")
    files = [str(items[i][0]) for i in order]
    pos = proj[order]
    _check_spacing(folder, files, pos)
    ds0 = items[order[0]][1]
    for p, ds in items:
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise UserError(f"{p}: multi-frame (enhanced) CT is not supported: export one file per slice")
    return Series(uid=uid, folder=folder, files=files, positions=pos, patient_id=_text(ds0, "PatientID"),
                  series_number=_text(ds0, "SeriesNumber"), study_date=_text(ds0, "StudyDate"),
                  series_time=_text(ds0, "SeriesTime").split(".")[0], description=_text(ds0, "SeriesDescription"),
                  transfer_syntax=str(ds0.file_meta.get("TransferSyntaxUID", "")),
                  headers=[items[i][1] for i in order])


def _safe(s: str, default: str) -> str:
    s = re.sub(r"[^A-Za-z0-9.-]+", "-", s).strip("-.")
    return s or default


def name_cases(series: Sequence[Series]) -> None:
    """Set ``case`` of each series: ``<PatientID>_<SeriesNumber>``, made unique with the study date and then the
    series time where two series would share it; UserError where they agree on all of these."""
    def names(s: Series):
        p, n = _safe(s.patient_id, "anonymous"), _safe(s.series_number, "x")
        d, t = _safe(s.study_date, "nodate"), _safe(s.series_time, "notime")
        return [f"{p}_{n}", f"{p}_{d}_{n}", f"{p}_{d}_{n}_{t}"]

    cands = {s.uid: names(s) for s in series}
    level = {s.uid: 0 for s in series}
    while True:
        by_name: Dict[str, List[Series]] = {}
        for s in series:
            by_name.setdefault(cands[s.uid][level[s.uid]].lower(), []).append(s)
        clashes = [g for g in by_name.values() if len(g) > 1]
        if not clashes:
            break
        for g in clashes:
            if any(level[s.uid] == 2 for s in g):
                a, b = g[0], g[1]
                raise UserError(f"series {a.folder} and {b.folder} would both be case {cands[a.uid][2]} (same "
                                f"PatientID, StudyDate, SeriesNumber and SeriesTime; series UIDs {a.uid}, {b.uid}): "
                                f"no unique case name; give them distinct SeriesNumbers or predict them separately")
            for s in g:
                level[s.uid] += 1
    for s in series:
        s.case = cands[s.uid][level[s.uid]]


@contextlib.contextmanager
def _silenced_fds():
    """stdout and stderr of C libraries (file descriptors 1 and 2) to /dev/null for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def _probe_decoder(s: Series) -> None:
    """A compressed transfer syntax: decode the first slice with SimpleITK/GDCM; UserError if it cannot."""
    if s.transfer_syntax in _UNCOMPRESSED:
        return
    import SimpleITK as sitk
    from pydicom.uid import UID

    try:
        with _silenced_fds():  # decoders print to the C streams ("Invalid marker size"): one line is ours
            sitk.ReadImage(s.files[0])
    except RuntimeError:
        name = UID(s.transfer_syntax).name if s.transfer_syntax else "unknown"
        raise UserError(f"series {s.folder}: transfer syntax {name} ({s.transfer_syntax}) cannot be decoded by "
                        f"the installed SimpleITK/GDCM ({s.files[0]}); decompress it first (e.g. gdcmconv --raw)") \
            from None


def scan_folder(folder, log: Callable[[str], None] = print) -> List[Series]:
    """Every CT series under ``folder``, checked (see the module) and named, sorted by case name. Skipped series
    are reported through ``log``, one line each. UserError for the first bad file or series, or if none is CT."""
    folder = Path(folder)
    groups: Dict[str, List[Tuple[Path, object]]] = {}
    skipped: Dict[str, Tuple[Path, str]] = {}
    for p in find_dicom_files(folder):
        ds = _read_header(p)
        reason = _skip_reason(ds)
        uid = _text(ds, "SeriesInstanceUID")
        if reason != "DICOMDIR, not an image" and (not uid or "SOPClassUID" not in ds):
            raise UserError(f"{p}: corrupt or truncated DICOM file (no SOPClassUID or SeriesInstanceUID)")
        if reason is not None:
            skipped.setdefault(uid or str(p), (p, reason))
            continue
        _check_complete(p, ds)
        groups.setdefault(uid, []).append((p, ds))
    series = []
    for uid, items in groups.items():
        if len(items) < 2:
            skipped.setdefault(uid, (items[0][0], "one slice, not a volume"))
            continue
        series.append(_build_series(uid, items))
    for p, reason in skipped.values():
        log(f"skipped series of {p} ({reason})")
    if not series:
        raise UserError(f"{folder}: no CT series found (searched recursively; "
                        f"{len(skipped)} non-CT/localizer series skipped)")
    name_cases(series)
    for s in series:
        _probe_decoder(s)
    return sorted(series, key=lambda s: s.case)


def read_series(s: Series):
    """The series as a SimpleITK image in HU (int16 where the headers' range fits, else GDCM's type), read by
    SimpleITK's GDCM series reader over the files sorted along the normal."""
    import SimpleITK as sitk

    r = sitk.ImageSeriesReader()
    r.SetFileNames(s.files)
    try:
        img = r.Execute()
    except RuntimeError as e:
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        raise UserError(f"series {s.folder}: cannot read ({lines[-1].strip() if lines else 'unreadable'})") from None
    if img.GetPixelID() in (sitk.sitkInt32, sitk.sitkUInt16, sitk.sitkUInt32) and _fits_int16(s):
        img = sitk.Cast(img, sitk.sitkInt16)
    return img


def _fits_int16(s: Series) -> bool:
    """Whether every slice's stored range (BitsStored, PixelRepresentation) times slope plus intercept fits int16:
    decided from the headers, without a pass over the voxels."""
    for h in s.headers:
        try:
            bits, signed = int(h.BitsStored), int(h.PixelRepresentation) == 1
            slope, icpt = float(h.get("RescaleSlope", 1) or 1), float(h.get("RescaleIntercept", 0) or 0)
        except (AttributeError, TypeError, ValueError):
            return False
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        ends = (lo * slope + icpt, hi * slope + icpt)
        if slope != int(slope) or icpt != int(icpt) or min(ends) < -32768 or max(ends) > 32767:
            return False
    return bool(s.headers)
