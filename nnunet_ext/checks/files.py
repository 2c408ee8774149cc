"""One file read whole, before any prediction or scoring: complete, readable, finite; a checkpoint complete
(:func:`check_checkpoint`); and the one rule for output paths.

* **read completely**: SimpleITK reads a truncated ``.nii.gz`` (a broken download) without complaint and fills the
  missing voxels with zeros. A gzip file is therefore decompressed here to its end-of-stream marker, and a NIfTI
  file (``.nii``/``.nii.gz``, NIfTI-1 or -2) must hold at least ``vox_offset + prod(dim) * bitpix / 8`` bytes, as
  its header says. Other formats are read completely with SimpleITK.
* **finite**: NaN/Inf voxels are an error naming the file and their count (counted while streaming a NIfTI file,
  from the array otherwise). There is no silent repair.

Every failure is a one-line :class:`~nnunet_ext.errors.UserError` naming the file. The result of a file's check is
cached per (path, size, modification time): a file checked twice in one process is read once.
"""
from __future__ import annotations

import functools
import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from nnunet_ext.errors import UserError

_CHUNK = 1 << 23  # 8 MiB of decompressed data at a time
#: 2D natural images (nnU-Net's NaturalImage2DIO): an RGB file holds several channels
NATURAL_ENDINGS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")

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
    natural = path.lower().endswith(NATURAL_ENDINGS)
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


# ------------------------------------------------------------------------------------------------ checkpoints
def check_checkpoint(path) -> None:
    """A trained model's checkpoint (``fold_X/checkpoint_final.pth``) is complete before any prediction starts
    (an interrupted copy of a model folder leaves a truncated file that torch only rejects once the prediction has
    begun, or silently for a foreign file). ``torch.save``'s format is a zip archive: its central directory (at the
    end: a truncated file has none) and the CRC-32 of every member (``ZipFile.testzip``: the whole file read once,
    nothing unpickled, memory of one 8 MiB block; cost: docs/bad_inputs.md). A file that is not a zip (torch's
    legacy format) is loaded with ``torch.load(map_location="cpu")``. UserError naming the file."""
    import zipfile

    path = Path(path)
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as e:
        raise UserError(f"{path}: cannot read checkpoint ({e.strerror or e})") from None
    if is_zip:
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as e:
            raise UserError(f"{path}: checkpoint is truncated or corrupt ({type(e).__name__}: {e}); copy the model "
                            f"folder again") from None
        if bad is not None:
            raise UserError(f"{path}: checkpoint is corrupt (CRC mismatch in {bad}); copy the model folder again")
        return
    import torch

    try:
        torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - whatever torch says, the file is the user's
        raise UserError(f"{path}: not a readable PyTorch checkpoint, truncated or corrupt ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0][:100]}); copy the model folder again") from None
