"""The metrics of one structure and of one case: every metric of :data:`nnunet_ext.evaluation.table.METRICS`, computed
by the table's own functions, next to nnU-Net's per-case fields (``compute_metrics``: Dice, IoU, FP, TP, FN, TN,
n_pred, n_ref), with the physical spacing and nnU-Net's ignore label."""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from nnunet_ext.errors import UserError
from nnunet_ext.evaluation.postprocessing import Postprocessing
from nnunet_ext.evaluation.table import METRICS, SURFACE_METRICS, Structure

__all__ = ["STOCK_KEYS", "metric_keys", "structure_metrics", "surface_metrics", "allowed_label_values",
           "compute_case_metrics"]

#: the stock per-class keys of nnU-Net's compute_metrics, in its order (its Dice is the table's)
STOCK_KEYS = ("Dice", "IoU", "FP", "TP", "FN", "TN", "n_pred", "n_ref")


def metric_keys() -> List[str]:
    """The per-class keys of a case: nnU-Net's, then the table's metrics that nnU-Net does not compute."""
    return list(STOCK_KEYS) + [k for k in METRICS if k not in STOCK_KEYS]


def structure_metrics(structure: Structure) -> Dict[str, float]:
    """``{name: value}`` of every metric of the table for one structure, by the table's functions."""
    return {name: m.function(structure) for name, m in METRICS.items()}


def surface_metrics(reference: np.ndarray, prediction: np.ndarray, spacing, nsd_tolerance_mm: float = 2.0,
                    ignore_mask: Optional[np.ndarray] = None, nsd_convention: str = "voxel") -> dict:
    """HD95 (mm) and NSD at ``nsd_tolerance_mm`` of one structure.

    Args:
        reference, prediction: boolean masks of the same shape (2D or 3D; axes of size 1 are dropped, so nnU-Net's
            ``(1, H, W)`` 2D cases are measured in 2D).
        spacing: voxel spacing per axis, in the arrays' axis order (nnU-Net's ``properties['spacing']``).
        nsd_tolerance_mm: NSD tolerance tau in mm (>= 0).
        ignore_mask: optional boolean mask (nnU-Net's ignore label): surface voxels inside it are not counted
            (the surfaces themselves are those of the full masks).
        nsd_convention: ``voxel`` (default) or ``surfel`` (:mod:`nnunet_ext.evaluation.surface`).

    Returns ``{"HD95": float, "NSD": float}``; both empty -> both NaN (excluded from means); exactly one empty ->
    the worst case: HD95 = the image diagonal in mm (of the measured axes), NSD 0.0
    (:mod:`nnunet_ext.evaluation.table`). Raises ValueError for bad input.
    """
    s = Structure(reference, prediction, spacing, nsd_tolerance_mm, ignore_mask, nsd_convention)
    return {k: METRICS[k].function(s) for k in SURFACE_METRICS}


def allowed_label_values(labels_or_regions, ignore_label) -> set:
    """0, every label of ``labels_or_regions`` (labels or regions) and the ignore label."""
    values = {0}
    for r in labels_or_regions:
        values.update(int(v) for v in (np.atleast_1d(r)))
    if ignore_label is not None:
        values.add(int(ignore_label))
    return values


def _present_values(seg: np.ndarray, fname: str) -> List[int]:
    if seg.size == 0:
        return []
    if not np.all(np.isfinite(seg[:: max(1, seg.size // 100000)])) or seg.min() < 0:
        raise UserError(f"{fname}: segmentation has negative or non-finite values")
    as_int = seg.astype(np.int64, copy=False)
    if seg.dtype.kind == "f" and not np.array_equal(as_int, seg):
        raise UserError(f"{fname}: segmentation has non-integer values")
    return np.flatnonzero(np.bincount(as_int.ravel())).tolist()


def compute_case_metrics(reference_file: str, prediction_file: str, image_reader_writer,
                         labels_or_regions, ignore_label: Optional[int] = None,
                         nsd_tolerance_mm: float = 2.0, allowed_values: Optional[set] = None,
                         nsd_convention: str = "voxel", postprocessing: Optional[Postprocessing] = None) -> dict:
    """nnU-Net's ``compute_metrics`` for one case (same keys, built from nnU-Net's own pieces) plus every other
    metric of the table, per class/region in the order of :func:`metric_keys`.

    ``postprocessing``: the comparison's rule (:mod:`nnunet_ext.evaluation.postprocessing`), applied to the
    prediction after its label values are checked and before any metric (default: none). ``nsd_convention``:
    ``voxel`` or ``surfel`` (:mod:`nnunet_ext.evaluation.surface`).

    ``allowed_values``: label values the files may contain (default: those of ``labels_or_regions``, 0 and the
    ignore label); any other value raises ``UserError`` naming the file.
    """
    from nnunetv2.evaluation.evaluate_predictions import region_or_label_to_mask

    seg_ref, props_ref = image_reader_writer.read_seg(reference_file)
    seg_pred, props_pred = image_reader_writer.read_seg(prediction_file)
    if seg_ref.shape != seg_pred.shape:
        raise UserError(f"{prediction_file}: shape {tuple(seg_pred.shape[1:])} differs from the reference "
                        f"{reference_file} {tuple(seg_ref.shape[1:])}")
    spacing = [float(s) for s in props_ref["spacing"]]
    if not np.allclose(spacing, [float(s) for s in props_pred["spacing"]], rtol=1e-3, atol=1e-5):
        raise UserError(f"{prediction_file}: spacing {list(props_pred['spacing'])} differs from the reference "
                        f"{reference_file} {spacing}")
    allowed = allowed_label_values(labels_or_regions, ignore_label) if allowed_values is None else allowed_values
    for seg, fname in ((seg_ref, reference_file), (seg_pred, prediction_file)):
        bad = sorted(set(_present_values(seg, fname)) - allowed)
        if bad:
            raise UserError(f"{fname}: label value(s) {bad} are not among the labels of dataset.json "
                            f"{sorted(allowed)}")
    seg_ref, seg_pred = seg_ref[0], seg_pred[0]  # drop nnU-Net's channel axis; spacing is per remaining axis
    if postprocessing is not None:
        seg_pred = postprocessing.apply(seg_pred, list(labels_or_regions))
    if len(spacing) != seg_ref.ndim:
        raise UserError(f"{reference_file}: spacing {spacing} does not match the image dimension {seg_ref.ndim}")

    ignore_mask = seg_ref == ignore_label if ignore_label is not None else None
    results = {"reference_file": reference_file, "prediction_file": prediction_file, "metrics": {}}
    for r in labels_or_regions:
        # surfaces of the full masks; voxels inside the ignore label are not counted (Dice and surfaces alike)
        s = Structure(region_or_label_to_mask(seg_ref, r), region_or_label_to_mask(seg_pred, r), spacing,
                      nsd_tolerance_mm, ignore_mask, nsd_convention)
        values = structure_metrics(s)
        tp, fp, fn, tn = s.counts
        stock = {"IoU": np.nan if tp + fp + fn == 0 else tp / (tp + fp + fn),
                 "FP": fp, "TP": tp, "FN": fn, "TN": tn, "n_pred": fp + tp, "n_ref": fn + tp}
        results["metrics"][r] = {k: values[k] if k in values else stock[k] for k in metric_keys()}
    return results
