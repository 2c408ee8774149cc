"""Folder and trained-model evaluation with every metric of the table, written in nnU-Net's ``summary.json`` layout.

Per case and class/region: nnU-Net's fields (``Dice``, ``IoU``, ``TP`` ...) exactly as nnU-Net computes them, and
the other metrics of :data:`nnunet_ext.evaluation.table.METRICS` (HD95, NSD) next to them
(:func:`nnunet_ext.evaluation.case.compute_case_metrics`); means as nnU-Net takes them (``mean``,
``foreground_mean``) with the empty-mask counts of :mod:`nnunet_ext.evaluation.table`; the JSON (nnU-Net's
``save_summary_json``) and a per-case CSV, both written only after every case has been computed. Every summary names
its scoring rules under ``"scoring"``: the NSD convention and tolerance and the post-processing rule
(:mod:`nnunet_ext.evaluation.postprocessing`) applied to every prediction before scoring.
"""
from __future__ import annotations

import csv
import multiprocessing
import os
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np

from nnunet_ext.checks import check_evaluation_pairs
from nnunet_ext.errors import UserError
from nnunet_ext.evaluation.case import allowed_label_values, compute_case_metrics, metric_keys
from nnunet_ext.evaluation.postprocessing import Postprocessing
from nnunet_ext.evaluation.surface import DEFAULT_NSD_CONVENTION, check_nsd_convention_option
from nnunet_ext.evaluation.table import BOTH_EMPTY, N_BOTH_EMPTY_KEY, N_ONE_EMPTY_KEY, ONE_EMPTY, empty_kind_of_counts

__all__ = ["case_id", "default_csv", "SCORING_KEY", "fold_summary_name", "scoring_record", "write_outputs",
           "compute_metrics_on_folder_with_surface", "evaluate_folder",
           "FoldResults", "evaluate_trained_model_folds"]


#: key of a summary's scoring rules: ``{"nsd_convention", "nsd_tolerance_mm", "postprocessing": {"rule", "pkl"}}``
SCORING_KEY = "scoring"


def fold_summary_name(postprocessing: Optional[Postprocessing] = None) -> str:
    """The summary a trained model's ``fold_X/validation`` gets: ``summary_surface.json`` under the rule ``none``,
    ``summary_surface_pp_<rule>.json`` otherwise (so scorings under two rules do not overwrite each other)."""
    rule = postprocessing.rule if postprocessing is not None else "none"
    return "summary_surface.json" if rule == "none" else f"summary_surface_pp_{rule}.json"


def scoring_record(nsd_tolerance_mm: float, nsd_convention: str, postprocessing: Optional[Postprocessing]) -> dict:
    return {"nsd_convention": nsd_convention, "nsd_tolerance_mm": float(nsd_tolerance_mm),
            "postprocessing": (postprocessing or Postprocessing()).record()}


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

    keys = list(results[0]["metrics"][regions_or_labels[0]].keys()) if results else metric_keys()
    header = ["case", "class", *keys, "reference_file", "prediction_file"]
    rows = []
    for c in results:
        for r in regions_or_labels:
            rows.append([case_id(c["prediction_file"], file_ending), label_or_region_to_key(r),
                         *[c["metrics"][r][k] for k in keys], c["reference_file"], c["prediction_file"]])
    return header, rows


def write_outputs(result: dict, output_file: str, csv_file: str, regions_or_labels, file_ending: str) -> None:
    """``result`` as JSON (nnU-Net's save_summary_json) and CSV, each written to a temporary name first and then
    renamed."""
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


def default_csv(output_file: str) -> str:
    """The per-case CSV that goes with ``output_file``: the same name with ``.csv``."""
    return (output_file[: -len(".json")] if output_file.endswith(".json") else output_file) + ".csv"


def _compute_folder(folder_ref, folder_pred, image_reader_writer, file_ending, regions_or_labels, ignore_label,
                    num_processes, nsd_tolerance_mm, chill, allowed_values=None,
                    nsd_convention: str = DEFAULT_NSD_CONVENTION, postprocessing: Optional[Postprocessing] = None) \
        -> dict:
    """All metrics of a folder, nothing written; the result names its scoring rules (:data:`SCORING_KEY`). Raises
    UserError for bad input."""
    check_nsd_convention_option(nsd_convention)
    from batchgenerators.utilities.file_and_folder_operations import isdir, isfile, join, subfiles

    for what, folder in (("reference folder", folder_ref), ("prediction folder", folder_pred)):
        if not isdir(folder):
            raise UserError(f"{what} not found: {folder}")
    regions_or_labels = list(regions_or_labels)
    if not regions_or_labels:
        raise UserError("no labels or regions to evaluate")
    files_pred = subfiles(folder_pred, suffix=file_ending, join=False)
    files_ref = subfiles(folder_ref, suffix=file_ending, join=False)
    if not files_pred:
        raise UserError(f"{folder_pred}: no predictions ending in {file_ending}")
    missing_ref = [f for f in files_pred if not isfile(join(folder_ref, f))]
    if missing_ref:
        raise UserError(f"{join(folder_ref, missing_ref[0])}: reference missing for prediction {missing_ref[0]}"
                        + (f" (and {len(missing_ref) - 1} more)" if len(missing_ref) > 1 else ""))
    if not chill:
        missing_pred = [f for f in files_ref if not isfile(join(folder_pred, f))]
        if missing_pred:
            raise UserError(f"{join(folder_pred, missing_pred[0])}: prediction missing for reference case "
                            f"{missing_pred[0]}" + (f" (and {len(missing_pred) - 1} more)"
                                                    if len(missing_pred) > 1 else "")
                            + "; use --chill (chill=True) to evaluate the present cases only")
    check_evaluation_pairs((join(folder_ref, f), join(folder_pred, f)) for f in files_pred)
    args = [(join(folder_ref, f), join(folder_pred, f), image_reader_writer, regions_or_labels, ignore_label,
             nsd_tolerance_mm, allowed_values, nsd_convention, postprocessing) for f in files_pred]
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
    return {"metric_per_case": results, "mean": means, "foreground_mean": foreground_mean,
            SCORING_KEY: scoring_record(nsd_tolerance_mm, nsd_convention, postprocessing)}


def compute_metrics_on_folder_with_surface(folder_ref, folder_pred, output_file, image_reader_writer, file_ending,
                                           regions_or_labels, ignore_label=None, num_processes=1,
                                           nsd_tolerance_mm=2.0, csv_file=None, chill=True,
                                           nsd_convention: str = DEFAULT_NSD_CONVENTION,
                                           postprocessing: Optional[Postprocessing] = None) -> dict:
    """nnU-Net's ``compute_metrics_on_folder`` with every metric of the table (``HD95``, ``NSD``) per class/region.

    Evaluates every prediction in ``folder_pred`` (ending in ``file_ending``) against the same file name in
    ``folder_ref``; with ``chill=False`` every reference must have a prediction. ``output_file`` (``.json``, or None
    to write nothing) is written with nnU-Net's ``save_summary_json``; the per-case CSV (one row per case and class)
    goes to ``csv_file`` (default: ``output_file`` with ``.csv``). Files are written only after all metrics are
    computed. Returns the summary dict (keys: ``metric_per_case``, ``mean``, ``foreground_mean``)."""
    if output_file is not None and not str(output_file).endswith(".json"):
        raise UserError(f"output file must end with .json: {output_file}")
    result = _compute_folder(str(folder_ref), str(folder_pred), image_reader_writer, file_ending, regions_or_labels,
                             ignore_label, num_processes, nsd_tolerance_mm, chill,
                             nsd_convention=nsd_convention, postprocessing=postprocessing)
    if output_file is not None:
        output_file = str(output_file)
        write_outputs(result, output_file, str(csv_file) if csv_file else default_csv(output_file),
                      list(regions_or_labels), file_ending)
    return result


# ------------------------------------------------------------------------------------------------ dataset.json/plans
def _load_json_file(path, what: str) -> dict:
    from batchgenerators.utilities.file_and_folder_operations import load_json

    if path is None or not os.path.isfile(path):
        raise UserError(f"{what} not found: {path}")
    try:
        return load_json(path)
    except Exception as e:  # noqa: BLE001 - any parse error is the user's file
        raise UserError(f"{path}: cannot read {what} ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def _setup_from_jsons(folder_ref: str, dataset_json_file, plans_file):
    """Reader/writer, file ending, labels or regions, ignore label and allowed values, as compute_metrics_on_folder2
    derives them."""
    from batchgenerators.utilities.file_and_folder_operations import isdir, subfiles
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_json = _load_json_file(dataset_json_file, "dataset.json")
    plans = _load_json_file(plans_file, "plans.json")
    if "file_ending" not in dataset_json or "labels" not in dataset_json:
        raise UserError(f"{dataset_json_file}: dataset.json needs 'file_ending' and 'labels'")
    file_ending = dataset_json["file_ending"]
    if not isdir(folder_ref):
        raise UserError(f"reference folder not found: {folder_ref}")
    examples = subfiles(folder_ref, suffix=file_ending, join=True)
    if not examples:
        raise UserError(f"{folder_ref}: no reference segmentations ending in {file_ending}")
    try:
        rw = determine_reader_writer_from_dataset_json(dataset_json, examples[0])()
        lm = PlansManager(plans).get_label_manager(dataset_json)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{dataset_json_file} / {plans_file}: {type(e).__name__}: {str(e).splitlines()[0]}") \
            from None
    labels = lm.foreground_regions if lm.has_regions else lm.foreground_labels
    return rw, file_ending, labels, lm.ignore_label, allowed_label_values(dataset_json["labels"].values(), None)


def evaluate_folder(gt_folder, pred_folder, dataset_json, plans_json, output_file=None, nsd_tolerance_mm=2.0,
                    num_processes=1, chill=True, nsd_convention: str = DEFAULT_NSD_CONVENTION,
                    postprocessing: Optional[Postprocessing] = None) -> dict:
    """Like nnU-Net's ``compute_metrics_on_folder2``: labels/regions, ignore label, reader and file ending from
    ``dataset_json`` / ``plans_json`` (paths). Writes ``output_file`` (default ``pred_folder/summary_surface.json``)
    and the CSV next to it. Raises ``nnunet_ext.errors.UserError`` for bad input, before writing anything."""
    gt_folder, pred_folder = str(gt_folder), str(pred_folder)
    for what, folder in (("reference folder", gt_folder), ("prediction folder", pred_folder)):
        if not os.path.isdir(folder):
            raise UserError(f"{what} not found: {folder}")
    rw, file_ending, labels, ignore_label, allowed = _setup_from_jsons(gt_folder, dataset_json, plans_json)
    output_file = str(output_file) if output_file is not None else os.path.join(pred_folder, "summary_surface.json")
    if not output_file.endswith(".json"):
        raise UserError(f"output file must end with .json: {output_file}")
    result = _compute_folder(gt_folder, pred_folder, rw, file_ending, labels, ignore_label, num_processes,
                             nsd_tolerance_mm, chill, allowed_values=allowed, nsd_convention=nsd_convention,
                             postprocessing=postprocessing)
    write_outputs(result, output_file, default_csv(output_file), labels, file_ending)
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
                                 gt_folder=None, folds=None, nsd_convention: str = DEFAULT_NSD_CONVENTION,
                                 postprocessing: Optional[Postprocessing] = None) -> Dict[int, dict]:
    """Evaluate ``fold_X/validation`` of a trained model output folder (``nnUNet_results/DatasetXXX/
    Trainer__Plans__Config``) against ``nnUNet_preprocessed/DatasetXXX/gt_segmentations`` (what nnU-Net's own
    validation uses; ``gt_folder`` overrides it), writing ``fold_X/validation/summary_surface.json`` (+ ``.csv``;
    :func:`fold_summary_name` under another post-processing rule).

    Expected folds: ``folds``, else one per entry of the dataset's ``splits_final.json``, else 0-4. Returns a
    :class:`FoldResults` (a dict ``{fold: summary}``); folds without validation predictions are listed in its
    ``missing`` attribute and in a warning, never silently dropped. Files are written only after every fold has
    been computed. Raises ``UserError`` if no fold can be evaluated or the inputs are bad."""
    from batchgenerators.utilities.file_and_folder_operations import join, load_json, subfiles

    model_folder = str(model_folder)
    if not os.path.isdir(model_folder):
        raise UserError(f"model folder not found: {model_folder}")
    dataset_json = str(dataset_json) if dataset_json is not None else join(model_folder, "dataset.json")
    plans_file = join(model_folder, "plans.json")
    plans = _load_json_file(plans_file, "plans.json")
    splits = None
    if gt_folder is None:
        pre = os.environ.get("nnUNet_preprocessed")
        if not pre:
            raise UserError("nnUNet_preprocessed is not set (needed to find gt_segmentations); set it or pass the "
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
                                    nsd_tolerance_mm, True, allowed_values=allowed, nsd_convention=nsd_convention,
                                    postprocessing=postprocessing)
        if splits is not None and fold < len(splits):
            have = {case_id(f, file_ending) for f in subfiles(val, suffix=file_ending, join=False)}
            lost = sorted(set(splits[fold]["val"]) - have)
            if lost:
                out.missing_cases[fold] = lost
    if not out:
        raise UserError(f"{model_folder}: no fold has validation predictions ("
                        + "; ".join(out.missing.values()) + ")")
    for fold, summary in out.items():
        f = join(model_folder, f"fold_{fold}", "validation", fold_summary_name(postprocessing))
        write_outputs(summary, f, default_csv(f), labels, file_ending)
    if out.missing:
        warnings.warn(f"{model_folder}: fold(s) {sorted(out.missing)} not evaluated: "
                      + "; ".join(out.missing[k] for k in sorted(out.missing)), stacklevel=2)
    for fold, lost in out.missing_cases.items():
        warnings.warn(f"{model_folder}: fold {fold} has no prediction for {len(lost)} validation case(s) "
                      f"of splits_final.json, e.g. {lost[0]}", stacklevel=2)
    return out
