"""DICOM SEG of a predicted label map over its source CT series (highdicom).

The label map is on the series' grid (nnU-Net writes predictions with the input's geometry), its slice ``k`` on
the series' ``k``-th file along the slice normal (:mod:`.series` sorts them so): highdicom's ``Segmentation`` gets
the source datasets in that order and a (slices, rows, columns) array, one segment per foreground label named from
``dataset.json``'s ``labels``. The SEG references the source series and each source instance (derivation image
sequence per frame); empty frames are omitted. Written as ``<case>.seg.dcm`` beside the prediction.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import numpy as np

import nnunet_ext
from nnunet_ext.dicom.series import Series
from nnunet_ext.errors import UserError

SEG_SUFFIX = ".seg.dcm"


def label_names(dataset_json: dict) -> Dict[int, str]:
    """``{label value: name}`` of the foreground labels in ``dataset.json`` (a region's value: its last label)."""
    out = {}
    for name, v in dataset_json.get("labels", {}).items():
        value = int(v[-1] if isinstance(v, (list, tuple)) else v)
        if value != 0 and name != "ignore":
            out[value] = name
    return out


def _source_datasets(s: Series) -> list:
    import pydicom

    # the headers scan_folder read (pixel data deferred): highdicom needs the attributes, not the pixels
    return s.headers or [pydicom.dcmread(f, stop_before_pixels=True) for f in s.files]


def write_seg(labels: np.ndarray, series: Series, dataset_json: dict, path) -> Path:
    """Write ``labels`` (slices, rows, columns; integer label map on the series' grid) as a binary DICOM SEG."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    sources = _source_datasets(series)
    if labels.shape != (len(sources), int(sources[0].Rows), int(sources[0].Columns)):
        raise UserError(f"{path}: prediction shape {list(labels.shape)} does not match series {series.folder} "
                        f"({len(sources)} slices of {sources[0].Rows}x{sources[0].Columns})")
    names = label_names(dataset_json)
    present = [v for v in sorted(names) if np.any(labels == v)]
    values = present or sorted(names)[:1]  # a SEG needs one segment; an empty one if nothing was found
    algorithm = hd.AlgorithmIdentificationSequence(name="nnunet-ext", version=nnunet_ext.__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    descriptions = [hd.seg.SegmentDescription(segment_number=i + 1, segment_label=names[v],
                                              segmented_property_category=codes.SCT.Tissue,
                                              segmented_property_type=codes.SCT.Organ,
                                              algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                                              algorithm_identification=algorithm)
                    for i, v in enumerate(values)]
    masks = np.stack([labels == v for v in values], axis=-1).astype(np.uint8)  # (slices, rows, cols, segments)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=masks, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=int(
            (series.series_number or "0").split(".")[0] or 0) + 1000, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="nnunet-ext", manufacturer_model_name="nnunet-ext",
        software_versions=nnunet_ext.__version__, device_serial_number="0",
        series_description=f"nnunet-ext segmentation of {series.description or series.case}"[:64])
    path = Path(path)
    seg.save_as(path)
    return path


def read_seg_labels(path, series: Series) -> np.ndarray:
    """A SEG read back with highdicom as a label map on ``series``' slices (slices, rows, columns): each frame
    placed on the source instance it references, segment ``i`` written as its segment label's value."""
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    uids = [str(h.SOPInstanceUID) for h in _source_datasets(series)]
    arr = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, ignore_spatial_locations=True,
                                            assert_missing_frames_are_empty=True)  # (slices, rows, cols, segments)
    return arr


def segment_labels(path) -> Sequence[str]:
    """The segment labels of a SEG, in segment-number order."""
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    return [seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()]
