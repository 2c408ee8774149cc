"""Write a CT volume as a DICOM series with the tags a PACS export has (for the tests and benchmarks/dicom_speed.py).

One file per slice (CT Image Storage, explicit VR little endian), stored unsigned 16-bit with rescale slope 1 and
intercept -1024 by default, so that the stored values are ``HU + 1024``; ``ImagePositionPatient`` of slice ``k`` is
``origin + k * spacing_z * normal`` with ``normal = row x column`` of ``direction``: any (oblique) orientation
works. ``shuffle`` writes the files in random order with random names, ``reverse_instance_numbers`` numbers the
slices backwards: a reader must sort by position along the normal. :func:`write_localizer` writes a one-slice
LOCALIZER series into the same study.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _base_dataset(patient_id: str, study_uid: str, series_uid: str, series_number: int, modality: str = "CT"):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient_id, f"Test^{patient_id}", "", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber, ds.Modality = int(series_number), modality
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid, "frame of reference"])
    ds.SeriesTime = f"1200{int(series_number) % 60:02d}"
    ds.Manufacturer, ds.PositionReferenceIndicator = "nnunet-ext synthetic", ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.KVP = "120"
    return ds


def write_ct_series(volume_hu: np.ndarray, folder, spacing_zyx: Sequence[float], origin_xyz=(0.0, 0.0, 0.0),
                    direction: Optional[Sequence[float]] = None, patient_id: str = "P001", series_number: int = 2,
                    study_uid: Optional[str] = None, series_uid: Optional[str] = None, intercept: float = -1024.0,
                    slope: float = 1.0, shuffle: bool = True, reverse_instance_numbers: bool = True,
                    seed: int = 0, bits_stored: int = 16) -> List[Path]:
    """Write ``volume_hu`` (z, y, x, HU) as one CT series into ``folder``; returns the files in slice order.
    ``direction``: SimpleITK's row-major 3x3 (columns: the x, y, z axes in patient space); default identity."""
    from pydicom.uid import generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d = np.asarray(direction if direction is not None else np.eye(3).ravel(), dtype=float).reshape(3, 3)
    row, col, normal = d[:, 0], d[:, 1], d[:, 2]
    stored = np.round((np.asarray(volume_hu, dtype=np.float64) - intercept) / slope)
    if stored.min() < 0 or stored.max() >= 1 << bits_stored:
        raise ValueError(f"HU range {volume_hu.min()}..{volume_hu.max()} does not fit unsigned {bits_stored}-bit "
                         f"storage")
    stored = stored.astype(np.uint16)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    rng = np.random.default_rng(seed)
    nz = stored.shape[0]
    names = [f"IM{i:04d}.dcm" for i in (rng.permutation(nz) if shuffle else range(nz))]
    files = []
    for k in range(nz):
        ds = _base_dataset(patient_id, study_uid, series_uid, series_number)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = nz - k if reverse_instance_numbers else k + 1
        pos = np.asarray(origin_xyz, dtype=float) + k * float(spacing_zyx[0]) * normal
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row, *col)]
        ds.PixelSpacing = [f"{float(spacing_zyx[1]):.6f}", f"{float(spacing_zyx[2]):.6f}"]  # row, column spacing
        ds.SliceThickness = f"{float(spacing_zyx[0]):.6f}"
        ds.SliceLocation = f"{float(pos @ normal):.6f}"
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{intercept:g}", f"{slope:g}", "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
        ds.PixelData = stored[k].tobytes()
        f = folder / names[k]
        ds.save_as(f, enforce_file_format=True)
        files.append(f)
    return files


def write_localizer(folder, patient_id: str = "P001", study_uid: Optional[str] = None, series_number: int = 1,
                    size: int = 32) -> Path:
    """A one-slice LOCALIZER (scout) CT image in ``folder``."""
    from pydicom.uid import generate_uid

    ds = _base_dataset(patient_id, study_uid or generate_uid(), generate_uid(), series_number)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.InstanceNumber = 1
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 0, -1]
    ds.PixelSpacing, ds.Rows, ds.Columns = [1, 1], size, size
    ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
    ds.PixelData = np.full((size, size), 1024, np.uint16).tobytes()
    f = Path(folder) / "localizer.dcm"
    f.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(f, enforce_file_format=True)
    return f
