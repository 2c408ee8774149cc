"""Surface metrics (HD95, NSD) in nnU-Net's evaluation, and the ``nnunet-ext evaluate`` command.

nnU-Net v2 evaluates Dice and IoU only (``nnunetv2.evaluation.evaluate_predictions``). This module adds, per class
(or region, for region-based datasets), the 95th-percentile Hausdorff distance and the normalised surface Dice at a
tolerance in mm, computed with MONAI, and writes nnU-Net's own ``summary.json`` layout (``metric_per_case``,
``mean``, ``foreground_mean``) with ``HD95`` and ``NSD`` next to ``Dice``, plus a per-case CSV.

Definitions (both with physical spacing on every axis, surfaces = mask voxels with a 6-connected background
neighbour, distances between voxel centres, MONAI ``use_subvoxels=False``):

* ``HD95``: max of the two directed 95th percentiles of surface distances (reference -> prediction and
  prediction -> reference), ``monai.metrics.compute_hausdorff_distance(percentile=95, directed=False)``. In mm.
* ``NSD``: (#reference surface voxels within tau of the predicted surface + #predicted surface voxels within tau of
  the reference surface) / (#reference + #predicted surface voxels), ``monai.metrics.compute_surface_dice``.

Empty masks: the conventions of :mod:`nnunet_ext.evaluation.table` (Metrics Reloaded), per case and class: both masks
empty -> Dice, HD95 and NSD are NaN (excluded from the means, counted in ``n_both_empty``; nnU-Net's own ``Dice`` is
NaN there too); exactly one empty -> the worst case, kept in the means and counted in ``n_one_empty``: Dice 0 (as
nnU-Net computes it), NSD 0, HD95 = the image diagonal in mm. nnU-Net's fields (``Dice``, ``IoU``, ``TP`` ...) are
exactly nnU-Net's.

Speed: both masks are cropped to the bounding box of their union plus a 1-voxel border (padded and sliced by
nnunet_ext.boxes, on acvl_utils' bounding-box functions) before MONAI sees them (MONAI would crop too, but only after converting the
whole volume to float tensors); benchmarks/surface_metrics_speed.py times one structure at 512 x 512 x 200.
"""
from __future__ import annotations

import csv
import math
import multiprocessing
import os
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np

from nnunet_ext.boxes import box_slices, expand_bbox, foreground_bbox
from nnunet_ext.errors import UserError
from nnunet_ext.evaluation.table import (BOTH_EMPTY, METRICS, N_BOTH_EMPTY_KEY, N_ONE_EMPTY_KEY, ONE_EMPTY,
                                    SURFACE_METRICS, empty_kind, empty_kind_of_counts, empty_value, fmt_mean,
                                    image_diagonal_mm)
from nnunet_ext.checks.inputs import check_evaluation_pairs, check_output_path

__all__ = ["surface_metrics", "compute_case_metrics", "compute_metrics_on_folder_with_surface", "evaluate_folder",
           "evaluate_trained_model_folds", "FoldResults", "case_id", "register_cli"]

SURFACE_KEYS = SURFACE_METRICS
#: the stock per-class keys of nnU-Net's compute_metrics, in its order
STOCK_KEYS = ("Dice", "IoU", "FP", "TP", "FN", "TN", "n_pred", "n_ref")

_user_error = UserError  # one-line error, exit status 2 (nnunet_ext.errors)


# ------------------------------------------------------------------------------------------------ one structure
def crop_to_union(reference: np.ndarray, prediction: np.ndarray, ignore_mask: Optional[np.ndarray] = None):
    """Crop both (non-empty) masks to the bounding box of ``reference | prediction`` plus a 1-voxel border (clipped
    to the array), by nnunet_ext's one box rule (:mod:`nnunet_ext.boxes`). The union's box is the hull of the two
    boxes, so the union of the full volumes is never formed."""
    a, b = foreground_bbox(reference), foreground_bbox(prediction)
    box = tuple((min(x[0], y[0]), max(x[1], y[1])) for x, y in zip(a, b))
    sl = box_slices(expand_bbox(box, [1] * reference.ndim, reference.shape))
    return reference[sl], prediction[sl], (None if ignore_mask is None else ignore_mask[sl])


def surface_metrics(reference: np.ndarray, prediction: np.ndarray, spacing, nsd_tolerance_mm: float = 2.0,
                    ignore_mask: Optional[np.ndarray] = None) -> dict:
    """HD95 (mm) and NSD at ``nsd_tolerance_mm`` of one structure.

    Args:
        reference, prediction: boolean masks of the same shape (2D or 3D; axes of size 1 are dropped, so nnU-Net's
            ``(1, H, W)`` 2D cases are measured in 2D).
        spacing: voxel spacing per axis, in the arrays' axis order (nnU-Net's ``properties['spacing']``).
        nsd_tolerance_mm: NSD tolerance tau in mm (>= 0).
        ignore_mask: optional boolean mask (nnU-Net's ignore label): surface voxels inside it are not counted
            (the surfaces themselves are those of the full masks).

    Returns ``{"HD95": float, "NSD": float}``; both empty -> both NaN (excluded from means); exactly one empty ->
    the worst case: HD95 = the image diagonal in mm (of the measured axes), NSD 0.0 (:mod:`nnunet_ext.evaluation.table`).
    """
    reference = np.asarray(reference).astype(bool, copy=False)
    prediction = np.asarray(prediction).astype(bool, copy=False)
    if reference.shape != prediction.shape:
        raise ValueError(f"reference shape {reference.shape} != prediction shape {prediction.shape}")
    spacing = [float(s) for s in np.atleast_1d(np.asarray(spacing, dtype=float))]
    if len(spacing) != reference.ndim:
        raise ValueError(f"spacing {spacing} has {len(spacing)} entries, the masks have {reference.ndim} axes")
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be positive and finite, got {spacing}")
    if not (math.isfinite(nsd_tolerance_mm) and nsd_tolerance_mm >= 0):
        raise ValueError(f"nsd_tolerance_mm must be finite and >= 0, got {nsd_tolerance_mm}")
    if ignore_mask is not None:
        ignore_mask = np.asarray(ignore_mask).astype(bool, copy=False)
        if ignore_mask.shape != reference.shape:
            raise ValueError(f"ignore_mask shape {ignore_mask.shape} != mask shape {reference.shape}")
        if not ignore_mask.any():
            ignore_mask = None
    # drop singleton axes (nnU-Net represents 2D images as (1, H, W) with a dummy spacing of 999 * max spacing)
    keep = [ax for ax, n in enumerate(reference.shape) if n > 1]
    if len(keep) != reference.ndim:
        new_shape = tuple(reference.shape[ax] for ax in keep)
        reference, prediction = reference.reshape(new_shape), prediction.reshape(new_shape)
        ignore_mask = None if ignore_mask is None else ignore_mask.reshape(new_shape)
        spacing = [spacing[ax] for ax in keep]
    if len(spacing) not in (2, 3):
        raise ValueError(f"surface metrics need 2D or 3D masks (after dropping size-1 axes), got shape "
                         f"{reference.shape}")

    if ignore_mask is None:
        has_ref, has_pred = bool(reference.any()), bool(prediction.any())
    else:  # what lies in ignored voxels only does not count as present
        has_ref, has_pred = bool((reference & ~ignore_mask).any()), bool((prediction & ~ignore_mask).any())
    diagonal = image_diagonal_mm(reference.shape, spacing)
    kind = empty_kind(has_ref, has_pred)
    if kind:
        return _empty(kind, diagonal)

    reference, prediction, ignore_mask = crop_to_union(reference, prediction, ignore_mask)
    with warnings.catch_warnings():
        # MONAI 1.5/1.6 calls its own deprecated `always_return_as_numpy` argument internally
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        return _monai_surface_metrics(reference, prediction, spacing, float(nsd_tolerance_mm), ignore_mask, diagonal)


def _empty(kind: str, diagonal_mm: float) -> dict:
    return {k: empty_value(k, kind, diagonal_mm) for k in SURFACE_KEYS}


def _monai_surface_metrics(reference: np.ndarray, prediction: np.ndarray, spacing: List[float], tau: float,
                           ignore_mask: Optional[np.ndarray], diagonal_mm: float) -> dict:
    """HD95 and NSD of two non-empty, already cropped masks, in ONE pass of MONAI.

    ``monai.metrics.compute_hausdorff_distance(percentile=95, directed=False)`` and
    ``compute_surface_dice(use_subvoxels=False)`` both call ``monai.metrics.utils.get_edge_surface_distance``
    (edges by binary erosion, exact Euclidean edge-to-edge distances with the spacing, symmetric) and reduce its two
    distance arrays: HD95 = max over the two directions of ``torch.quantile(d, 0.95)``; NSD = #(d <= tau) over both
    directions / #distances. Calling them one after the other computes the edges and distances twice (half the time
    of a large structure), so this calls ``get_edge_surface_distance`` once and applies the same two reductions
    (tests/test_metrics.py checks the result equals the two public functions). Its ``mask`` argument (keep-mask,
    all True without an ignore label) also drops surface points in ignored voxels and skips MONAI's own crop, done
    already by the caller with the same 1-voxel border.
    """
    import torch
    from monai.metrics.utils import get_edge_surface_distance

    keep = np.ones(reference.shape, dtype=bool) if ignore_mask is None else ~ignore_mask
    _, (d_pred_ref, d_ref_pred), _ = get_edge_surface_distance(
        torch.from_numpy(np.ascontiguousarray(prediction)), torch.from_numpy(np.ascontiguousarray(reference)),
        distance_metric="euclidean", spacing=spacing, use_subvoxels=False, symmetric=True,
        mask=torch.from_numpy(keep), warn_empty=False)
    n_pred, n_ref = len(d_pred_ref), len(d_ref_pred)
    if n_pred == 0 and n_ref == 0:  # only possible with an ignore mask covering both surfaces
        return _empty(BOTH_EMPTY, diagonal_mm)
    if n_pred == 0 or n_ref == 0 or not (torch.isfinite(d_pred_ref).all() and torch.isfinite(d_ref_pred).all()):
        return _empty(ONE_EMPTY, diagonal_mm)
    hd95 = max(float(torch.quantile(d, 0.95)) for d in (d_pred_ref, d_ref_pred))
    nsd = float((d_pred_ref <= tau).sum() + (d_ref_pred <= tau).sum()) / float(n_pred + n_ref)
    return {"HD95": hd95, "NSD": nsd}


# ------------------------------------------------------------------------------------------------ one case
def _allowed_label_values(labels_or_regions, ignore_label) -> set:
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
        raise _user_error(f"{fname}: segmentation has negative or non-finite values")
    as_int = seg.astype(np.int64, copy=False)
    if seg.dtype.kind == "f" and not np.array_equal(as_int, seg):
        raise _user_error(f"{fname}: segmentation has non-integer values")
    return np.flatnonzero(np.bincount(as_int.ravel())).tolist()


def compute_case_metrics(reference_file: str, prediction_file: str, image_reader_writer,
                         labels_or_regions, ignore_label: Optional[int] = None,
                         nsd_tolerance_mm: float = 2.0, allowed_values: Optional[set] = None) -> dict:
    """nnU-Net's ``compute_metrics`` for one case (same keys, built from nnU-Net's own pieces) plus HD95 and NSD.

    ``allowed_values``: label values the files may contain (default: those of ``labels_or_regions``, 0 and the
    ignore label); any other value raises ``UserError`` naming the file.
    """
    from nnunetv2.evaluation.evaluate_predictions import compute_tp_fp_fn_tn, region_or_label_to_mask

    seg_ref, props_ref = image_reader_writer.read_seg(reference_file)
    seg_pred, props_pred = image_reader_writer.read_seg(prediction_file)
    if seg_ref.shape != seg_pred.shape:
        raise _user_error(f"{prediction_file}: shape {tuple(seg_pred.shape[1:])} differs from the reference "
                          f"{reference_file} {tuple(seg_ref.shape[1:])}")
    spacing = [float(s) for s in props_ref["spacing"]]
    if not np.allclose(spacing, [float(s) for s in props_pred["spacing"]], rtol=1e-3, atol=1e-5):
        raise _user_error(f"{prediction_file}: spacing {list(props_pred['spacing'])} differs from the reference "
                          f"{reference_file} {spacing}")
    allowed = _allowed_label_values(labels_or_regions, ignore_label) if allowed_values is None else allowed_values
    for seg, fname in ((seg_ref, reference_file), (seg_pred, prediction_file)):
        bad = sorted(set(_present_values(seg, fname)) - allowed)
        if bad:
            raise _user_error(f"{fname}: label value(s) {bad} are not among the labels of dataset.json "
                              f"{sorted(allowed)}")
    seg_ref, seg_pred = seg_ref[0], seg_pred[0]  # drop nnU-Net's channel axis; spacing is per remaining axis
    if len(spacing) != seg_ref.ndim:
        raise _user_error(f"{reference_file}: spacing {spacing} does not match the image dimension {seg_ref.ndim}")

    ignore_mask = seg_ref == ignore_label if ignore_label is not None else None
    results = {"reference_file": reference_file, "prediction_file": prediction_file, "metrics": {}}
    for r in labels_or_regions:
        m = results["metrics"][r] = {}
        mask_ref = region_or_label_to_mask(seg_ref, r)
        mask_pred = region_or_label_to_mask(seg_pred, r)
        tp, fp, fn, tn = compute_tp_fp_fn_tn(mask_ref, mask_pred, ignore_mask)
        if tp + fp + fn == 0:
            m["Dice"] = np.nan
            m["IoU"] = np.nan
        else:
            m["Dice"] = 2 * tp / (2 * tp + fp + fn)
            m["IoU"] = tp / (tp + fp + fn)
        m["FP"], m["TP"], m["FN"], m["TN"] = fp, tp, fn, tn
        m["n_pred"], m["n_ref"] = fp + tp, fn + tp
        # surfaces of the full masks; surface voxels inside the ignore label are not counted (as for Dice)
        m.update(surface_metrics(mask_ref, mask_pred, spacing, nsd_tolerance_mm, ignore_mask=ignore_mask))
    return results


# ------------------------------------------------------------------------------------------------ folder
#: file endings stripped by case_id when the dataset's is not given
_KNOWN_ENDINGS = (".nii.gz", ".nrrd", ".mha", ".nii", ".png", ".tif", ".tiff", ".npz", ".npy")


def case_id(fname: str, file_ending: Optional[str] = None) -> str:
    """nnU-Net's case identifier of a segmentation file: its name without ``file_ending`` (default: any of the
    endings nnU-Net's readers use)."""
    base = os.path.basename(str(fname))
    for ending in ((file_ending,) if file_ending else _KNOWN_ENDINGS):
        if base.endswith(ending):
            return base[: -len(ending)]
    return base if file_ending else os.path.splitext(base)[0]


def _aggregate(results: List[dict], regions_or_labels) -> Tuple[dict, dict]:
    """nnU-Net's means (np.nanmean over cases per class; foreground mean = np.mean over foreground classes), for our
    metrics too: by the conventions of :mod:`nnunet_ext.evaluation.table` a per-case NaN is a both-empty case (excluded)
    and a one-empty case already holds the worst value. ``n_both_empty`` / ``n_one_empty`` per class, summed over the
    foreground classes in ``foreground_mean``."""
    metric_list = list(results[0]["metrics"][regions_or_labels[0]].keys())
    means = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an all-NaN slice
        for r in regions_or_labels:
            means[r] = {m: np.nanmean([c["metrics"][r][m] for c in results]) for m in metric_list}
            kinds = [empty_kind_of_counts(c["metrics"][r]["n_ref"], c["metrics"][r]["n_pred"]) for c in results]
            means[r][N_BOTH_EMPTY_KEY] = int(sum(k == BOTH_EMPTY for k in kinds))
            means[r][N_ONE_EMPTY_KEY] = int(sum(k == ONE_EMPTY for k in kinds))
        foreground = [k for k in means if not (k == 0 or k == "0")]
        foreground_mean = {m: np.mean([means[k][m] for k in foreground]) for m in metric_list}
        for key in (N_BOTH_EMPTY_KEY, N_ONE_EMPTY_KEY):
            foreground_mean[key] = int(sum(means[k][key] for k in foreground))
    return means, foreground_mean


def _csv_rows(results: List[dict], regions_or_labels, file_ending: str) -> Tuple[List[str], List[list]]:
    from nnunetv2.evaluation.evaluate_predictions import label_or_region_to_key

    keys = list(results[0]["metrics"][regions_or_labels[0]].keys()) if results else list(STOCK_KEYS + SURFACE_KEYS)
    header = ["case", "class", *keys, "reference_file", "prediction_file"]
    rows = []
    for c in results:
        for r in regions_or_labels:
            rows.append([case_id(c["prediction_file"], file_ending), label_or_region_to_key(r),
                         *[c["metrics"][r][k] for k in keys], c["reference_file"], c["prediction_file"]])
    return header, rows


def _write_outputs(result: dict, output_file: str, csv_file: str, regions_or_labels, file_ending: str) -> None:
    """JSON (nnU-Net's save_summary_json) and CSV, each written to a temporary name first and then renamed."""
    from nnunetv2.evaluation.evaluate_predictions import save_summary_json

    header, rows = _csv_rows(result["metric_per_case"], regions_or_labels, file_ending)
    for f in (output_file, csv_file):
        d = os.path.dirname(os.path.abspath(f))
        os.makedirs(d, exist_ok=True)
    tmp_json, tmp_csv = output_file + ".tmp.json", csv_file + ".tmp"
    try:
        save_summary_json(result, tmp_json)
        with open(tmp_csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
        os.replace(tmp_json, output_file)
        os.replace(tmp_csv, csv_file)
    finally:
        for t in (tmp_json, tmp_csv):
            if os.path.exists(t):
                os.remove(t)


def _default_csv(output_file: str) -> str:
    return (output_file[: -len(".json")] if output_file.endswith(".json") else output_file) + ".csv"


def _compute_folder(folder_ref, folder_pred, image_reader_writer, file_ending, regions_or_labels, ignore_label,
                    num_processes, nsd_tolerance_mm, chill, allowed_values=None) -> dict:
    """All metrics of a folder, nothing written. Raises UserError for bad input."""
    from batchgenerators.utilities.file_and_folder_operations import isdir, isfile, join, subfiles

    for what, folder in (("reference folder", folder_ref), ("prediction folder", folder_pred)):
        if not isdir(folder):
            raise _user_error(f"{what} not found: {folder}")
    regions_or_labels = list(regions_or_labels)
    if not regions_or_labels:
        raise _user_error("no labels or regions to evaluate")
    files_pred = subfiles(folder_pred, suffix=file_ending, join=False)
    files_ref = subfiles(folder_ref, suffix=file_ending, join=False)
    if not files_pred:
        raise _user_error(f"{folder_pred}: no predictions ending in {file_ending}")
    missing_ref = [f for f in files_pred if not isfile(join(folder_ref, f))]
    if missing_ref:
        raise _user_error(f"{join(folder_ref, missing_ref[0])}: reference missing for prediction {missing_ref[0]}"
                          + (f" (and {len(missing_ref) - 1} more)" if len(missing_ref) > 1 else ""))
    if not chill:
        missing_pred = [f for f in files_ref if not isfile(join(folder_pred, f))]
        if missing_pred:
            raise _user_error(f"{join(folder_pred, missing_pred[0])}: prediction missing for reference case "
                              f"{missing_pred[0]}" + (f" (and {len(missing_pred) - 1} more)"
                                                      if len(missing_pred) > 1 else "")
                              + "; use --chill (chill=True) to evaluate the present cases only")
    check_evaluation_pairs((join(folder_ref, f), join(folder_pred, f)) for f in files_pred)  # nnunet_ext.checks.inputs
    args = [(join(folder_ref, f), join(folder_pred, f), image_reader_writer, regions_or_labels, ignore_label,
             nsd_tolerance_mm, allowed_values) for f in files_pred]
    if num_processes <= 1 or len(args) == 1:
        results = [compute_case_metrics(*a) for a in args]
    else:
        with multiprocessing.get_context("spawn").Pool(min(num_processes, len(args))) as pool:
            results = pool.starmap(compute_case_metrics, args)

    from nnunetv2.utilities.json_export import recursive_fix_for_json_export

    means, foreground_mean = _aggregate(results, regions_or_labels)
    [recursive_fix_for_json_export(i) for i in results]
    recursive_fix_for_json_export(means)
    recursive_fix_for_json_export(foreground_mean)
    return {"metric_per_case": results, "mean": means, "foreground_mean": foreground_mean}


def compute_metrics_on_folder_with_surface(folder_ref, folder_pred, output_file, image_reader_writer, file_ending,
                                           regions_or_labels, ignore_label=None, num_processes=1,
                                           nsd_tolerance_mm=2.0, csv_file=None, chill=True) -> dict:
    """nnU-Net's ``compute_metrics_on_folder`` with ``HD95`` and ``NSD`` per class/region (see module docstring).

    Evaluates every prediction in ``folder_pred`` (ending in ``file_ending``) against the same file name in
    ``folder_ref``; with ``chill=False`` every reference must have a prediction. ``output_file`` (``.json``, or None
    to write nothing) is written with nnU-Net's ``save_summary_json``; the per-case CSV (one row per case and class)
    goes to ``csv_file`` (default: ``output_file`` with ``.csv``). Files are written only after all metrics are
    computed. Returns the summary dict (keys: ``metric_per_case``, ``mean``, ``foreground_mean``)."""
    if output_file is not None and not str(output_file).endswith(".json"):
        raise _user_error(f"output file must end with .json: {output_file}")
    result = _compute_folder(str(folder_ref), str(folder_pred), image_reader_writer, file_ending, regions_or_labels,
                             ignore_label, num_processes, nsd_tolerance_mm, chill)
    if output_file is not None:
        output_file = str(output_file)
        _write_outputs(result, output_file, str(csv_file) if csv_file else _default_csv(output_file),
                       list(regions_or_labels), file_ending)
    return result


# ------------------------------------------------------------------------------------------------ dataset.json/plans
def _load_json_file(path, what: str) -> dict:
    from batchgenerators.utilities.file_and_folder_operations import load_json

    if path is None or not os.path.isfile(path):
        raise _user_error(f"{what} not found: {path}")
    try:
        return load_json(path)
    except Exception as e:  # noqa: BLE001 - any parse error is the user's file
        raise _user_error(f"{path}: cannot read {what} ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def _setup_from_jsons(folder_ref: str, dataset_json_file, plans_file):
    """Reader/writer, file ending, labels or regions, ignore label and allowed values, as compute_metrics_on_folder2
    derives them."""
    from batchgenerators.utilities.file_and_folder_operations import isdir, subfiles
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_json = _load_json_file(dataset_json_file, "dataset.json")
    plans = _load_json_file(plans_file, "plans.json")
    if "file_ending" not in dataset_json or "labels" not in dataset_json:
        raise _user_error(f"{dataset_json_file}: dataset.json needs 'file_ending' and 'labels'")
    file_ending = dataset_json["file_ending"]
    if not isdir(folder_ref):
        raise _user_error(f"reference folder not found: {folder_ref}")
    examples = subfiles(folder_ref, suffix=file_ending, join=True)
    if not examples:
        raise _user_error(f"{folder_ref}: no reference segmentations ending in {file_ending}")
    try:
        rw = determine_reader_writer_from_dataset_json(dataset_json, examples[0])()
        lm = PlansManager(plans).get_label_manager(dataset_json)
    except Exception as e:  # noqa: BLE001
        raise _user_error(f"{dataset_json_file} / {plans_file}: {type(e).__name__}: {str(e).splitlines()[0]}") \
            from None
    labels = lm.foreground_regions if lm.has_regions else lm.foreground_labels
    return rw, file_ending, labels, lm.ignore_label, _allowed_label_values(dataset_json["labels"].values(), None)


def evaluate_folder(gt_folder, pred_folder, dataset_json, plans_json, output_file=None, nsd_tolerance_mm=2.0,
                    num_processes=1, chill=True) -> dict:
    """Like nnU-Net's ``compute_metrics_on_folder2``: labels/regions, ignore label, reader and file ending from
    ``dataset_json`` / ``plans_json`` (paths). Writes ``output_file`` (default ``pred_folder/summary_surface.json``)
    and the CSV next to it. Raises ``nnunet_ext.cli.UserError`` for bad input, before writing anything."""
    gt_folder, pred_folder = str(gt_folder), str(pred_folder)
    for what, folder in (("reference folder", gt_folder), ("prediction folder", pred_folder)):
        if not os.path.isdir(folder):
            raise _user_error(f"{what} not found: {folder}")
    rw, file_ending, labels, ignore_label, allowed = _setup_from_jsons(gt_folder, dataset_json, plans_json)
    output_file = str(output_file) if output_file is not None else os.path.join(pred_folder, "summary_surface.json")
    if not output_file.endswith(".json"):
        raise _user_error(f"output file must end with .json: {output_file}")
    result = _compute_folder(gt_folder, pred_folder, rw, file_ending, labels, ignore_label, num_processes,
                             nsd_tolerance_mm, chill, allowed_values=allowed)
    _write_outputs(result, output_file, _default_csv(output_file), labels, file_ending)
    return result


# ------------------------------------------------------------------------------------------------ trained model folds
class FoldResults(dict):
    """``{fold: summary}`` of the evaluated folds; ``missing`` = ``{fold: reason}`` for expected folds that could not
    be evaluated, ``missing_cases`` = ``{fold: [case ids]}`` of validation cases (splits_final.json) without a
    prediction."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.missing: Dict[int, str] = {}
        self.missing_cases: Dict[int, List[str]] = {}


def _fold_of(name: str) -> Optional[int]:
    if name.startswith("fold_"):
        try:
            return int(name[len("fold_"):])
        except ValueError:
            return None
    return None


def evaluate_trained_model_folds(model_folder, dataset_json=None, nsd_tolerance_mm=2.0, num_processes=1,
                                 gt_folder=None, folds=None) -> Dict[int, dict]:
    """Evaluate ``fold_X/validation`` of a trained model output folder (``nnUNet_results/DatasetXXX/
    Trainer__Plans__Config``) against ``nnUNet_preprocessed/DatasetXXX/gt_segmentations`` (what nnU-Net's own
    validation uses; ``gt_folder`` overrides it), writing ``fold_X/validation/summary_surface.json`` (+ ``.csv``).

    Expected folds: ``folds``, else one per entry of the dataset's ``splits_final.json``, else 0-4. Returns a
    :class:`FoldResults` (a dict ``{fold: summary}``); folds without validation predictions are listed in its
    ``missing`` attribute and in a warning, never silently dropped. Files are written only after every fold has
    been computed. Raises ``UserError`` if no fold can be evaluated or the inputs are bad."""
    from batchgenerators.utilities.file_and_folder_operations import join, load_json, subfiles

    model_folder = str(model_folder)
    if not os.path.isdir(model_folder):
        raise _user_error(f"model folder not found: {model_folder}")
    dataset_json = str(dataset_json) if dataset_json is not None else join(model_folder, "dataset.json")
    plans_file = join(model_folder, "plans.json")
    plans = _load_json_file(plans_file, "plans.json")
    splits = None
    if gt_folder is None:
        pre = os.environ.get("nnUNet_preprocessed")
        if not pre:
            raise _user_error("nnUNet_preprocessed is not set (needed to find gt_segmentations); set it or pass the "
                              "ground-truth folder")
        base = join(pre, plans.get("dataset_name", os.path.basename(os.path.dirname(os.path.abspath(model_folder)))))
        gt_folder = join(base, "gt_segmentations")
        if os.path.isfile(join(base, "splits_final.json")):
            splits = load_json(join(base, "splits_final.json"))
    gt_folder = str(gt_folder)
    rw, file_ending, labels, ignore_label, allowed = _setup_from_jsons(gt_folder, dataset_json, plans_file)

    present = sorted(f for f in (_fold_of(d) for d in os.listdir(model_folder)
                                 if os.path.isdir(join(model_folder, d))) if f is not None)
    if folds is None:
        folds = list(range(len(splits))) if splits else list(range(5))
        folds = sorted(set(folds) | set(present))
    out = FoldResults()
    for fold in folds:
        val = join(model_folder, f"fold_{fold}", "validation")
        if not os.path.isdir(join(model_folder, f"fold_{fold}")):
            out.missing[fold] = f"{join(model_folder, f'fold_{fold}')} does not exist"
            continue
        if not os.path.isdir(val) or not subfiles(val, suffix=file_ending, join=False):
            out.missing[fold] = f"{val}: no validation predictions ending in {file_ending}"
            continue
        out[fold] = _compute_folder(gt_folder, val, rw, file_ending, labels, ignore_label, num_processes,
                                    nsd_tolerance_mm, True, allowed_values=allowed)
        if splits is not None and fold < len(splits):
            have = {case_id(f, file_ending) for f in subfiles(val, suffix=file_ending, join=False)}
            lost = sorted(set(splits[fold]["val"]) - have)
            if lost:
                out.missing_cases[fold] = lost
    if not out:
        raise _user_error(f"{model_folder}: no fold has validation predictions ("
                          + "; ".join(out.missing.values()) + ")")
    for fold, summary in out.items():
        f = join(model_folder, f"fold_{fold}", "validation", "summary_surface.json")
        _write_outputs(summary, f, _default_csv(f), labels, file_ending)
    if out.missing:
        warnings.warn(f"{model_folder}: fold(s) {sorted(out.missing)} not evaluated: "
                      + "; ".join(out.missing[k] for k in sorted(out.missing)), stacklevel=2)
    for fold, lost in out.missing_cases.items():
        warnings.warn(f"{model_folder}: fold {fold} has no prediction for {len(lost)} validation case(s) "
                      f"of splits_final.json, e.g. {lost[0]}", stacklevel=2)
    return out


# ------------------------------------------------------------------------------------------------ CLI
def _print_summary(result: dict, title: str) -> None:
    print(title)

    def cells(m: dict) -> str:
        return "  ".join(f"{k} {fmt_mean(k, m.get(k), n_one_empty=m.get(N_ONE_EMPTY_KEY, 0))}"
                         + (f" {METRICS[k].unit}" if METRICS[k].unit else "") for k in METRICS)

    for k, m in result["mean"].items():
        print(f"  class {k}: {cells(m)}  (both masks empty in {m[N_BOTH_EMPTY_KEY]} case(s), excluded)")
    print(f"  foreground mean: {cells(result['foreground_mean'])}")
    print("  (k worst): k case(s) with exactly one mask empty, counted at the worst value (Dice 0, NSD 0, HD95 the "
          "image diagonal)")


def cmd_evaluate(args) -> int:

    if args.np < 1:
        raise UserError(f"-np must be >= 1, got {args.np}")
    if not (math.isfinite(args.nsd_tolerance_mm) and args.nsd_tolerance_mm >= 0):
        raise UserError(f"--nsd-tolerance-mm must be >= 0, got {args.nsd_tolerance_mm}")
    if args.folds_of:
        if args.pred_folder is not None:
            raise UserError("with --folds-of give at most GT_FOLDER (the predictions are the folds' validation "
                            "folders)")
        if args.pfile:
            raise UserError("-pfile cannot be used with --folds-of (MODEL_FOLDER/plans.json is used)")
        if args.o:
            raise UserError("-o cannot be used with --folds-of (each fold writes fold_X/validation/"
                            "summary_surface.json)")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = evaluate_trained_model_folds(args.folds_of, args.djfile, args.nsd_tolerance_mm, args.np,
                                               gt_folder=args.gt_folder)
        for fold in sorted(res):
            _print_summary(res[fold], f"fold {fold}: {os.path.join(args.folds_of, f'fold_{fold}', 'validation', 'summary_surface.json')}")
        for w in caught:
            print(f"warning: {w.message}")
        return 0
    if args.gt_folder is None or args.pred_folder is None:
        raise UserError("GT_FOLDER and PRED_FOLDER are required (or --folds-of MODEL_FOLDER)")
    if not args.djfile or not args.pfile:
        raise UserError("-djfile dataset.json and -pfile plans.json are required")
    out = args.o or os.path.join(args.pred_folder, "summary_surface.json")
    check_output_path(out, "-o output file", folder=False)  # nnunet_ext.checks.inputs: e.g. a path below a regular file
    res = evaluate_folder(args.gt_folder, args.pred_folder, args.djfile, args.pfile, out, args.nsd_tolerance_mm,
                          args.np, chill=args.chill)
    _print_summary(res, f"{out} (+ {_default_csv(out)}), {len(res['metric_per_case'])} case(s)")
    return 0


def register_cli(subparsers) -> None:
    s = subparsers.add_parser(
        "evaluate", help="nnU-Net's evaluation (Dice, IoU) plus HD95 and NSD per class, JSON + per-case CSV",
        description="Evaluates PRED_FOLDER against GT_FOLDER like nnUNetv2_evaluate_folder and adds HD95 (mm, "
                    "max of the two directed 95th percentiles) and NSD (normalised surface Dice at a tolerance in "
                    "mm) per class/region, with the physical spacing. Writes nnU-Net's summary.json layout "
                    "(metric_per_case, mean, foreground_mean) and a per-case CSV. Empty masks (Metrics Reloaded): "
                    "both empty -> Dice, HD95, NSD NaN (excluded from means, counted in n_both_empty); exactly one "
                    "empty -> worst case (Dice 0, NSD 0, HD95 = image diagonal in mm), counted in n_one_empty.")
    s.add_argument("gt_folder", nargs="?", default=None, metavar="GT_FOLDER",
                   help="folder with reference segmentations (with --folds-of: optional, default "
                        "nnUNet_preprocessed/DatasetXXX/gt_segmentations)")
    s.add_argument("pred_folder", nargs="?", default=None, metavar="PRED_FOLDER", help="folder with predictions")
    s.add_argument("-djfile", default=None, help="dataset.json (with --folds-of: default MODEL_FOLDER/dataset.json)")
    s.add_argument("-pfile", default=None, help="plans.json (not with --folds-of: MODEL_FOLDER/plans.json is used)")
    s.add_argument("-o", default=None, help="output .json (default PRED_FOLDER/summary_surface.json); the CSV goes "
                                            "next to it with .csv")
    s.add_argument("--nsd-tolerance-mm", type=float, default=2.0, help="NSD tolerance in mm (default 2.0)")
    s.add_argument("-np", type=int, default=1, help="number of processes (default 1)")
    s.add_argument("--chill", action="store_true",
                   help="do not fail when a reference case has no prediction (evaluate the present ones)")
    s.add_argument("--folds-of", default=None, metavar="MODEL_FOLDER",
                   help="evaluate fold_X/validation of a trained model folder (nnUNet_results/DatasetXXX/"
                        "Trainer__Plans__Config) instead; writes fold_X/validation/summary_surface.json")
    s.set_defaults(func=cmd_evaluate)
