"""Accuracy statistics of ``nnunet-ext benchmark``: per-case values of every metric of
:data:`nnunet_ext.evaluation.table.METRICS` for each row (a trainer's cross-validation, or a prediction folder) by
:mod:`nnunet_ext.evaluation.summary`, per class mean ± std under the empty-mask conventions of
:mod:`nnunet_ext.evaluation.table`, and against a reference row a paired two-sided Wilcoxon signed-rank test and a
paired bootstrap 95 % CI of the mean difference (``scipy.stats.bootstrap``, fixed seed); per-fold means of CV rows.
Every row is scored by the same code under one post-processing rule and one NSD convention.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from nnunet_ext.errors import UserError, dataset_name
from nnunet_ext.evaluation.postprocessing import (Postprocessing, postprocessing_for, prediction_folder_pkl,
                                                  results_folder_pkl)
from nnunet_ext.evaluation.table import METRICS, empty_kind_of_counts, summarize

#: key of the per-case empty-mask kind in per_case_table's entries
EMPTY_KEY = "empty"
#: key of the cross-validation fold of a case in per_case_table's entries (None for --pred rows)
FOLD_KEY = "fold"
#: the paired bootstrap: confidence, resamples, seed (fixed, so that a table is reproducible)
BOOTSTRAP_CONFIDENCE, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 0.95, 9999, 0


def per_case_table(summaries: Sequence[dict], fold: Optional[int] = None) -> Dict[str, Dict[str, Dict[str, float]]]:
    """{case: {class: {metric: value, "empty": kind}}} from nnU-Net-layout summaries (folds concatenated), one value
    per metric of the table; ``kind`` (:func:`nnunet_ext.evaluation.table.empty_kind_of_counts` of nnU-Net's
    ``n_ref`` / ``n_pred``; None where they are not in the summary) says which cases had an empty mask."""
    from nnunet_ext.evaluation.summary import case_id

    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    for s in summaries:
        for entry in s.get("metric_per_case", []):
            cid = case_id(entry.get("reference_file") or entry.get("prediction_file") or "")
            out[cid] = {str(k): {**{m: _num(v.get(m)) for m in METRICS},
                                 EMPTY_KEY: empty_kind_of_counts(v.get("n_ref"), v.get("n_pred")), FOLD_KEY: fold}
                        for k, v in entry.get("metrics", {}).items()}
    return out


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def wilcoxon_paired(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float, int]:
    """Paired two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon`` defaults) of a vs b after dropping pairs
    with a NaN. Returns (statistic, p, number of pairs); NaN statistic/p where the test is undefined (no pairs, or
    all differences zero)."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    n = int(keep.sum())
    if n == 0 or np.all(a == b):
        return float("nan"), float("nan"), n
    try:
        r = wilcoxon(a, b)
    except ValueError:
        return float("nan"), float("nan"), n
    return float(r.statistic), float(r.pvalue), n


def bootstrap_mean_difference(a: Sequence[float], b: Sequence[float], confidence: float = BOOTSTRAP_CONFIDENCE,
                              n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) \
        -> Tuple[float, float, float]:
    """(mean of a - b, CI low, CI high): paired bootstrap (cases resampled with their pairs; BCa,
    ``scipy.stats.bootstrap(paired=True)``, seed ``seed``) of the mean difference over the pairs without a NaN.
    Fewer than 2 pairs: the CI is NaN; all differences equal: the CI is that difference."""
    from scipy.stats import bootstrap

    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if a.size == 0:
        return float("nan"), float("nan"), float("nan")
    d = a - b
    mean = float(d.mean())
    if a.size < 2:
        return mean, float("nan"), float("nan")
    if np.all(d == d[0]):
        return mean, float(d[0]), float(d[0])

    def mean_diff(x, y, axis=-1):
        return np.mean(x - y, axis=axis)

    import warnings

    kw = dict(paired=True, vectorized=True, confidence_level=confidence, n_resamples=n_resamples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in ("BCa", "percentile"):  # BCa is undefined on some degenerate samples
            try:
                ci = bootstrap((a, b), mean_diff, method=method, rng=np.random.default_rng(seed), **kw)
            except TypeError:  # scipy < 1.15 spells the generator random_state
                ci = bootstrap((a, b), mean_diff, method=method, random_state=np.random.default_rng(seed), **kw)
            lo, hi = float(ci.confidence_interval.low), float(ci.confidence_interval.high)
            if np.isfinite(lo) and np.isfinite(hi):
                return mean, lo, hi
    return mean, float("nan"), float("nan")


def accuracy_stats(per_case: Dict[str, Dict[str, Dict[str, Dict[str, float]]]], reference: Optional[str]) -> dict:
    """Per trainer, class and metric: mean, std, n (defined cases), n_nan (excluded: both masks empty), n_one_empty
    (counted at the worst value) by :func:`nnunet_ext.evaluation.table.summarize`; ``fold_means`` ({fold: mean})
    where the cases have folds (CV); vs the reference: p, statistic, n_pairs (pairs with a NaN dropped), n_common,
    and ``mean_diff``, ``ci_low``, ``ci_high`` (:func:`bootstrap_mean_difference` on the same pairs).

    ``per_case``: {trainer: {case: {class: {metric: value}}}}."""
    stats: Dict[str, Dict[str, Dict[str, dict]]] = {}
    classes = sorted({c for cases in per_case.values() for per in cases.values() for c in per}, key=class_key)
    for tr, cases in per_case.items():
        stats[tr] = {}
        for c in classes:
            stats[tr][c] = {}
            for m in METRICS:
                have = [k for k in sorted(cases) if c in cases[k]]
                d = summarize([cases[k][c][m] for k in have], [cases[k][c].get(EMPTY_KEY) for k in have])
                folds = sorted({cases[k][c].get(FOLD_KEY) for k in have} - {None})
                if folds:
                    d["fold_means"] = {f: summarize([cases[k][c][m] for k in have
                                                     if cases[k][c].get(FOLD_KEY) == f])["mean"] for f in folds}
                if reference is not None and reference in per_case and tr != reference:
                    ref = per_case[reference]
                    common = sorted(k for k in cases if k in ref and c in cases[k] and c in ref[k])
                    stat, p, npairs = wilcoxon_paired([cases[k][c][m] for k in common],
                                                      [ref[k][c][m] for k in common])
                    diff, lo, hi = bootstrap_mean_difference([cases[k][c][m] for k in common],
                                                             [ref[k][c][m] for k in common])
                    d.update(p=p, statistic=stat, n_pairs=npairs, n_common=len(common), mean_diff=diff, ci_low=lo,
                             ci_high=hi)
                stats[tr][c][m] = d
    return stats


def class_key(c: str):
    try:
        return (0, int(c), "")
    except ValueError:
        return (1, 0, c)


def cv_folders(trainers: Sequence[str], dataset: str, configuration: str, plans_identifier: str,
               folders: Optional[Dict[str, str]] = None) -> Dict[str, Path]:
    """{row: results folder}: ``nnUNet_results/<dataset>/<trainer>__<plans>__<configuration>`` of each trainer, or
    the folder given for a NAME=FOLDER row; UserError when none of them exists."""
    from nnunetv2.paths import nnUNet_results

    if not nnUNet_results.is_set():
        raise UserError("nnUNet_results is not set (needed for --cv)")
    name = dataset_name(dataset)
    out = {tr: Path((folders or {}).get(tr) or
                    Path(str(nnUNet_results)) / name / f"{tr}__{plans_identifier}__{configuration}")
           for tr in trainers}
    if not any(mf.is_dir() for mf in out.values()):
        raise UserError(f"no trained model folder for any trainer in {Path(str(nnUNet_results)) / name} "
                        f"(looked for <trainer>__{plans_identifier}__{configuration})")
    return out


def row_postprocessing(rule: str, folders: Dict[str, Path], folds: Optional[Sequence[int]] = None) \
        -> Dict[str, Postprocessing]:
    """{row: checked rule} before any scoring. For ``nnunet`` each row's pkl: with ``folds`` (``--cv`` rows, results
    folders in nnU-Net's trainer layout) :func:`~nnunet_ext.evaluation.postprocessing.results_folder_pkl`, else
    (``--pred`` folders) :func:`~nnunet_ext.evaluation.postprocessing.prediction_folder_pkl`; UserError naming the
    missing or unreadable file. Rows whose folder does not exist are reported as missing later."""
    out = {}
    for row, folder in folders.items():
        if rule == "nnunet" and not Path(folder).is_dir():
            out[row] = postprocessing_for("none")
            continue
        pkl = None
        if rule == "nnunet":
            pkl = results_folder_pkl(folder, folds) if folds is not None else prediction_folder_pkl(folder)
        out[row] = postprocessing_for(rule, pkl, what=f"row {row}")
    return out


def collect_cv(trainers: Sequence[str], dataset: str, configuration: str, plans_identifier: str,
               folds: Sequence[int], nsd_tolerance_mm: float, num_processes: int, log=print,
               folders: Optional[Dict[str, str]] = None, nsd_convention: str = "voxel",
               postprocessing: Optional[Dict[str, Postprocessing]] = None):
    """(per_case {trainer: ...}, missing {trainer: [folds]}, sources) from nnUNet_results' fold_X/validation;
    ``folders``: {row name: results folder in nnU-Net's trainer layout} for rows that are not trainers;
    ``postprocessing``: {row: rule} (:func:`row_postprocessing`; default none)."""
    folders = cv_folders(trainers, dataset, configuration, plans_identifier, folders)
    import warnings

    from nnunet_ext.evaluation import summary

    per_case, missing = {}, {}
    for tr, mf in folders.items():
        res, reasons, lost_cases = {}, {}, {}
        if mf.is_dir():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = summary.evaluate_trained_model_folds(
                        str(mf), nsd_tolerance_mm=nsd_tolerance_mm, num_processes=num_processes, folds=list(folds),
                        nsd_convention=nsd_convention, postprocessing=(postprocessing or {}).get(tr))
            except UserError as e:  # no fold at all: reported as missing, the other trainers go on
                reasons = {f: str(e) for f in folds}
            reasons.update(getattr(res, "missing", {}) or {})
            lost_cases = getattr(res, "missing_cases", {}) or {}
        else:
            reasons = {f: f"{mf} does not exist" for f in folds}
        res = {int(k): v for k, v in (res or {}).items()}
        good = [f for f in folds if isinstance(res.get(f), dict) and "metric_per_case" in res[f]]
        missing[tr] = [f for f in folds if f not in good]
        per_case[tr] = {}
        for f in good:
            per_case[tr].update(per_case_table([res[f]], fold=f))
        msg = f"  {tr}: folds {good or 'none'}, {len(per_case[tr])} cases"
        if missing[tr]:
            why = reasons.get(missing[tr][0], "no validation predictions")
            msg += f"; MISSING folds {missing[tr]} (e.g. {why})"
        for f, lost in lost_cases.items():
            msg += f"; fold {f} lacks {len(lost)} validation case(s)"
        log(msg)
    return per_case, missing, {tr: str(mf) for tr, mf in folders.items()}


def collect_pred(preds: Dict[str, str], labels: str, dataset_json_file: str, plans_file: str,
                 nsd_tolerance_mm: float, num_processes: int, log=print, nsd_convention: str = "voxel",
                 postprocessing: Optional[Dict[str, Postprocessing]] = None):
    from nnunet_ext.evaluation import summary

    per_case = {}
    for tr, folder in preds.items():
        s = summary.evaluate_folder(labels, folder, dataset_json_file, plans_file, output_file=None,
                                    nsd_tolerance_mm=nsd_tolerance_mm, num_processes=num_processes, chill=True,
                                    nsd_convention=nsd_convention, postprocessing=(postprocessing or {}).get(tr))
        per_case[tr] = per_case_table([s])
        log(f"  {tr}: {len(per_case[tr])} cases from {folder}")
    return per_case, {tr: [] for tr in preds}, dict(preds)
