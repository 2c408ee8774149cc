"""Per-structure statistics of a prediction over its CT (``--statistics``): ``statistics.csv`` and
``statistics.json`` in the output folder.

Per case and foreground label of ``dataset.json``: voxel count; volume in ml (count x voxel volume / 1000); mean,
std (population, ddof 0), min and max of the image inside the label (HU for CT); number of connected components
(26-connectivity, :func:`scipy.ndimage.label` with a full 3x3x3 structure); bounding box: the first and last voxel
index on each image axis (x, y, z) and its extent in mm along those axes ((last - first + 1) x spacing), and the
patient-space (LPS, mm) position of the centre of its first voxel. A label absent from a case has count 0 and empty
fields. Each label is measured inside its own bounding box (:func:`scipy.ndimage.find_objects`), so the cost is one
pass over the volume plus the structures' boxes.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

FIELDS = ["case", "label", "name", "voxels", "volume_ml", "mean", "std", "min", "max", "components",
          "bbox_first_xyz", "bbox_last_xyz", "bbox_extent_mm_xyz", "bbox_first_lps_mm"]


def structure_statistics(image: np.ndarray, labels: np.ndarray, spacing_xyz: Sequence[float],
                         origin_xyz: Sequence[float], direction: Sequence[float], names: Dict[int, str],
                         boxes: Optional[list] = None) -> List[dict]:
    """One row per label of ``names`` (``image``, ``labels``: z, y, x arrays of one grid). ``boxes``:
    ``find_objects(labels)`` if the caller has it."""
    from scipy import ndimage

    if image.shape != labels.shape:
        raise ValueError(f"image {image.shape} and labels {labels.shape} differ in shape")
    spacing = np.asarray(spacing_xyz, dtype=float)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    lab = labels if labels.dtype.kind in "iu" else labels.astype(np.int32)
    if boxes is None:
        boxes = ndimage.find_objects(lab, max_label=max(names, default=0))
    rows = []
    for value, name in sorted(names.items()):
        box = boxes[value - 1] if value - 1 < len(boxes) else None
        row = {"label": int(value), "name": name, "voxels": 0, "volume_ml": 0.0}
        if box is not None:
            mask = lab[box] == value
            vals = image[box][mask].astype(np.float64)
            first = np.array([s.start for s in box][::-1])  # x, y, z
            last = np.array([s.stop - 1 for s in box][::-1])
            row.update(voxels=int(mask.sum()), volume_ml=float(mask.sum() * voxel_ml), mean=float(vals.mean()),
                       std=float(vals.std()), min=float(vals.min()), max=float(vals.max()),
                       components=int(ndimage.label(mask, structure=np.ones((3, 3, 3), bool))[1]),
                       bbox_first_xyz=first.tolist(), bbox_last_xyz=last.tolist(),
                       bbox_extent_mm_xyz=((last - first + 1) * spacing).round(3).tolist(),
                       bbox_first_lps_mm=(np.asarray(origin_xyz) + d @ (first * spacing)).round(3).tolist())
        rows.append(row)
    return rows


def write_statistics(rows_by_case: Dict[str, List[dict]], output_folder) -> List[Path]:
    """``statistics.json`` ({case: [rows]}) and ``statistics.csv`` (one row per case and label) in
    ``output_folder``."""
    out = Path(output_folder)
    js = out / "statistics.json"
    js.write_text(json.dumps(rows_by_case, indent=2))
    cs = out / "statistics.csv"
    with open(cs, "w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        for case, rows in rows_by_case.items():
            for r in rows:
                w.writerow({k: (" ".join(str(x) for x in v) if isinstance(v, list) else v)
                            for k, v in {"case": case, **r}.items()})
    return [cs, js]
