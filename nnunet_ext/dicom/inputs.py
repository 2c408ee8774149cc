"""The ``-i`` folder of ``predict`` / ``predict-c2f`` in any of three layouts, made into nnU-Net's layout.

* **nnU-Net's** (``CASE_XXXX<file_ending>``, every image file at the top so named, XXXX one of the model's
  channels, every case with all of them): used as it is.
* **any-named images** (``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha`` at the top; one-channel models): each file one
  case named after it (its name without the ending).
* **DICOM**: no image at the top; the folder is searched recursively for CT series (:mod:`.series`), each series
  one case ``<PatientID>_<SeriesNumber>``.

:func:`prepare_inputs` checks the whole folder first (nothing is written on bad input), then, for the last two
layouts, writes a staging folder ``.nnunet-ext-input-*`` beside the output folder holding ``<case>_0000<file_ending>``
(a symbolic link where the file already has the model's ending, else the image converted by SimpleITK with its
geometry; uncompressed for SimpleITK readers, :func:`stage`). :meth:`Inputs.cleanup` removes it. nnU-Net then
writes ``<case><file_ending>`` as usual.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

from nnunet_ext.checks import check_output_path, inspect_file
from nnunet_ext.dicom.series import Series, read_series, scan_folder
from nnunet_ext.errors import UserError

#: endings of the any-named layout
IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha")
STAGING_PREFIX = ".nnunet-ext-input-"


@dataclass
class Inputs:
    """An input folder as nnU-Net reads it: ``folder`` (the original or the staging folder), ``layout``
    (``nnunet``, ``images`` or ``dicom``), each case's image (channel 0) and, for DICOM, its series."""
    folder: Path
    layout: str
    images: Dict[str, str]
    series: Dict[str, Series] = field(default_factory=dict)
    staging: Optional[Path] = None

    def cleanup(self) -> None:
        if self.staging is not None and self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)


def _ending(name: str, endings) -> Optional[str]:
    low = name.lower()
    return next((e for e in sorted(endings, key=len, reverse=True) if low.endswith(e)), None)


def detect_layout(folder: Path, file_ending: str, num_channels: int) -> str:
    """``nnunet``, ``images`` or ``dicom`` (see the module). nnU-Net's layout only where every image file is
    ``CASE_XXXX<file_ending>`` with XXXX in 0000..``num_channels``-1 and every case has all channels (so
    ``patient_1234.nii.gz`` is an any-named image). UserError if ``folder`` is not a folder or mixes such
    nnU-Net-named images with others."""
    if not folder.is_dir():
        raise UserError(f"-i {folder}: input folder does not exist" if not folder.exists()
                        else f"-i {folder}: not a folder")
    images = sorted(p.name for p in folder.iterdir() if p.is_file() and _ending(p.name, IMAGE_ENDINGS + (file_ending,)))
    channels: Dict[str, set] = {}  # case -> its channel numbers, of the files named CASE_XXXX with XXXX < C
    named = []
    for f in images:
        m = re.fullmatch(r"(.+)_(\d{4})", f[: -len(file_ending)]) if f.endswith(file_ending) else None
        if m and int(m.group(2)) < num_channels:
            channels.setdefault(m.group(1), set()).add(int(m.group(2)))
            named.append(f)
    if named and len(named) < len(images):
        other = next(f for f in images if f not in named)
        raise UserError(f"-i {folder}: mixes nnU-Net's CASE_XXXX{file_ending} naming ({named[0]}) with other images "
                        f"({other}): {folder / other} is not named CASE_XXXX{file_ending} with XXXX a channel of "
                        f"this model (0000 to {num_channels - 1:04d}); use one layout")
    if named and all(len(c) == num_channels for c in channels.values()):
        return "nnunet"
    return "images" if images else "dicom"


def scan_inputs(input_folder, file_ending: str, num_channels: int, log: Callable[[str], None] = print) -> Inputs:
    """The layout of ``input_folder`` and its cases, every file checked; writes nothing. For nnU-Net's layout
    ``images`` is empty (nnU-Net's own checks, :func:`nnunet_ext.checks.check_prediction_inputs`, follow)."""
    folder = Path(input_folder)
    layout = detect_layout(folder, file_ending, num_channels)
    if layout == "nnunet":
        return Inputs(folder, layout, {})
    if num_channels != 1:
        raise UserError(f"-i {folder}: {layout} input (not nnU-Net's CASE_XXXX{file_ending} naming) needs a "
                        f"one-channel model; this model takes {num_channels} channels (nnU-Net's naming: every "
                        f"case's CASE_0000{file_ending} to CASE_{num_channels - 1:04d}{file_ending})")
    if layout == "dicom":
        series = scan_folder(folder, log)
        return Inputs(folder, layout, {s.case: s.files[0] for s in series}, {s.case: s for s in series})
    images: Dict[str, str] = {}
    for p in sorted(folder.iterdir()):
        end = _ending(p.name, IMAGE_ENDINGS + (file_ending,))
        if not end or not p.is_file():
            continue
        case = p.name[: -len(end)]
        twin = next((c for c in images if c.lower() == case.lower()), None)  # one output file where case is ignored
        if twin is not None:
            raise UserError(f"{images[twin]} and {p}: both would be case {case} (names that differ only in letter "
                            f"case or ending); rename one")
        info = inspect_file(p)  # read whole: truncation, NaN/Inf (nnunet_ext.checks)
        if info.ndim != 3 or info.components != 1:
            raise UserError(f"{p}: {info.ndim}D image with {info.components} component(s); expected 3D, one channel")
        if info.nonfinite:
            raise UserError(f"{p}: {info.nonfinite} non-finite (NaN/Inf) voxel(s)")
        images[case] = str(p)
    return Inputs(folder, layout, images)


def _write(img, target: Path, compress: bool) -> None:
    import SimpleITK as sitk

    if compress or not target.name.endswith(".gz"):
        sitk.WriteImage(img, str(target), compress, 1)
    else:  # ITK gzips whatever is named .gz: write plain, then name it as nnU-Net lists it
        plain = target.with_name(target.name[:-3])
        sitk.WriteImage(img, str(plain), False)
        plain.replace(target)


def stage(inputs: Inputs, output_folder, file_ending: str, reader_writer: str = "SimpleITKIO") -> Inputs:
    """Write ``<case>_0000<file_ending>`` for every case into a new staging folder beside ``output_folder``
    (nothing for nnU-Net's layout); returns ``inputs`` with ``folder`` and ``staging`` set. On any failure the
    staging folder is removed. Where the plans' ``reader_writer`` is SimpleITK's, converted images are written
    uncompressed even under a ``.nii.gz`` name (ITK's NIfTI reader reads plain data there; zlib would cost
    several seconds per CT); otherwise gzip level 1."""
    if inputs.layout == "nnunet":
        return inputs
    import SimpleITK as sitk

    compress = not reader_writer.startswith("SimpleITK")

    out = check_output_path(output_folder, "-o output folder")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    try:
        inputs.staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent))
    except OSError:  # an existing output folder in a read-only parent: the system's temporary folder
        inputs.staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX))
    try:
        staged = {}
        for case, src in inputs.images.items():
            target = inputs.staging / f"{case}_0000{file_ending}"
            if inputs.layout == "dicom":
                _write(read_series(inputs.series[case]), target, compress)
            elif src.endswith(file_ending):
                target.symlink_to(Path(src).absolute())
            else:
                _write(sitk.ReadImage(src), target, compress)
            staged[case] = str(target)
        inputs.images, inputs.folder = staged, inputs.staging
    except BaseException:
        inputs.cleanup()
        raise
    return inputs


def prepare_inputs(input_folder, output_folder, file_ending: str, num_channels: int,
                   log: Callable[[str], None] = print, reader_writer: str = "SimpleITKIO") -> Inputs:
    """:func:`scan_inputs` (every check; nothing written), then :func:`stage`."""
    return stage(scan_inputs(input_folder, file_ending, num_channels, log), output_folder, file_ending,
                 reader_writer)


def nnunet_case_images(folder, file_ending: str) -> Dict[str, str]:
    """``{case: CASE_0000 file}`` of a folder in nnU-Net's layout (statistics and previews read channel 0)."""
    suffix = f"_0000{file_ending}"
    return {p.name[: -len(suffix)]: str(p) for p in sorted(Path(folder).iterdir()) if p.name.endswith(suffix)}


def image_cases(inputs: Inputs, file_ending: str) -> Dict[str, str]:
    """Each case's channel-0 image, whatever the layout."""
    return inputs.images or nnunet_case_images(inputs.folder, file_ending)

