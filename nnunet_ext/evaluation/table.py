"""The metrics nnunet-ext reports, in ONE table, and their empty-mask conventions.

Every place that computes, averages or shows a metric reads :data:`METRICS`: evaluation
(:mod:`nnunet_ext.evaluation.case`) calls each entry's ``function`` on every structure of every case, and the
summaries (:mod:`nnunet_ext.evaluation.summary`, :mod:`nnunet_ext.evaluation.cli`), ``benchmark``
(:mod:`nnunet_ext.benchmark.accuracy`, :mod:`nnunet_ext.benchmark.report`) and ``demo`` (:mod:`nnunet_ext.data.demo`)
take from it the names, which direction is better, the digits shown, and the value of an empty case; the rules below
are applied here and nowhere else.

Empty masks (per case and class/region), after Metrics Reloaded (Maier-Hein, Reinke et al., "Metrics reloaded:
recommendations for image analysis validation", Nat. Methods 21, 2024; its reference implementation treats a case
with empty reference and empty prediction as perfect or excluded, and a metric undefined because exactly one mask
is empty as NaN that is set to the worst possible value in aggregation):

* **both masks empty** -> every metric (Dice, HD95, NSD) is NaN for that case: *excluded* from the means (nothing is
  there to segment, and a perfect score would inflate the mean of a model that finds nothing), and *counted*
  (``n_both_empty``). This is also what nnU-Net's own Dice does (``Dice = NaN`` when TP+FP+FN = 0, ``np.nanmean``),
  so nnU-Net's ``Dice``/``IoU`` fields of ``summary.json`` stay exactly as nnU-Net computes them.
* **exactly one mask empty** (a missed or a spurious structure) -> the *worst case* of every metric, kept in every
  mean and counted (``n_one_empty``): Dice 0, NSD 0, HD95 = the diagonal of the image in mm
  (``sqrt(sum((shape_i * spacing_i)^2))`` over the axes the metric is measured on), which no distance between two
  points of the image can exceed. No mean can therefore show a perfect HD95 for a class a model never predicted.
* a mean over no defined case (all cases both-empty) is NaN and shown as ``n/a``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from nnunet_ext.evaluation.surface import (DEFAULT_NSD_CONVENTION, SurfaceDistances, check_nsd_convention,
                                          prepare_masks, surface_distances, surfel_nsd)

#: how the two masks of one case and class are: both empty, exactly one empty, none empty
BOTH_EMPTY, ONE_EMPTY, NONE_EMPTY = "both", "one", ""
#: per-class counts written next to the means (``summary.json``'s ``mean[class]`` and ``foreground_mean``)
N_BOTH_EMPTY_KEY, N_ONE_EMPTY_KEY = "n_both_empty", "n_one_empty"
NA = "n/a"


class Structure:
    """One structure (class or region) of one case, as a metric's ``function`` receives it: the masks, ``spacing``
    and ``ignore_mask`` checked by :func:`nnunet_ext.evaluation.surface.prepare_masks` (size-1 axes dropped),
    ``nsd_tolerance_mm``, ``nsd_convention`` (``voxel`` / ``surfel``: :mod:`nnunet_ext.evaluation.surface`), and,
    each computed once on first use whatever the number of metrics reading it, ``counts`` (nnU-Net's
    ``compute_tp_fp_fn_tn``: tp, fp, fn, tn outside the ignore mask) and ``surface`` (the
    :class:`~nnunet_ext.evaluation.surface.SurfaceDistances`, one MONAI pass). Raises ValueError for bad input."""

    def __init__(self, reference, prediction, spacing, nsd_tolerance_mm: float = 2.0, ignore_mask=None,
                 nsd_convention: str = DEFAULT_NSD_CONVENTION):
        self.reference, self.prediction, self.spacing, self.ignore_mask = prepare_masks(
            reference, prediction, spacing, nsd_tolerance_mm, ignore_mask)
        self.nsd_tolerance_mm = float(nsd_tolerance_mm)
        self.nsd_convention = check_nsd_convention(nsd_convention)

    @cached_property
    def counts(self):
        from nnunetv2.evaluation.evaluate_predictions import compute_tp_fp_fn_tn

        return compute_tp_fp_fn_tn(self.reference, self.prediction, self.ignore_mask)

    @cached_property
    def surface(self) -> SurfaceDistances:
        return surface_distances(self.reference, self.prediction, self.spacing, self.ignore_mask)

    @cached_property
    def surface_kind(self) -> str:
        """:data:`BOTH_EMPTY`, :data:`ONE_EMPTY` or :data:`NONE_EMPTY` for the surface metrics: by the masks outside
        the ignore mask, then by the counted surface voxels (an ignore mask may cover a whole surface)."""
        d = self.surface
        kind = empty_kind(d.has_reference, d.has_prediction)
        if kind:
            return kind
        n_pred, n_ref = d.counts
        if n_pred == 0 and n_ref == 0:
            return BOTH_EMPTY
        return ONE_EMPTY if n_pred == 0 or n_ref == 0 or not d.finite else NONE_EMPTY

    @property
    def diagonal_mm(self) -> float:
        return image_diagonal_mm(self.reference.shape, self.spacing)


def dice(s: Structure) -> float:
    """2TP / (2TP + FP + FN) on nnU-Net's counts (its ``compute_metrics``); NaN when TP + FP + FN = 0 (both masks
    empty), 0 when exactly one is."""
    tp, fp, fn, _ = s.counts
    return np.nan if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def hd95(s: Structure) -> float:
    """HD95 in mm: max of the two directed 95th percentiles of the surface distances (MONAI)."""
    kind = s.surface_kind
    return empty_value("HD95", kind, s.diagonal_mm) if kind else s.surface.hd95()


def nsd(s: Structure) -> float:
    """NSD at ``s.nsd_tolerance_mm`` in ``s.nsd_convention`` (MONAI): ``voxel``, the share of the surface voxels
    within the tolerance of the other surface; ``surfel``, the share of the surface-element area (DeepMind's). Which
    masks are empty is decided on the voxel surfaces, for both conventions."""
    kind = s.surface_kind
    if kind:
        return empty_value("NSD", kind, s.diagonal_mm)
    if s.nsd_convention == "surfel":
        return surfel_nsd(s.reference, s.prediction, s.spacing, s.nsd_tolerance_mm, s.ignore_mask)
    return s.surface.nsd(s.nsd_tolerance_mm)


@dataclass(frozen=True)
class MetricDef:
    """One metric: ``name`` (its key in summaries and tables), ``function`` (computes it for one
    :class:`Structure`, empty masks included), ``better`` (``"higher"`` or ``"lower"``), ``digits`` shown in tables,
    ``unit``, and ``worst``: its value when exactly one mask is empty, as a function of the image diagonal in mm
    (both empty: NaN, excluded and counted). ``headline_digits``: its digits on ``benchmark``'s one-screen summary,
    where it also gets a box plot; None: it is in the full report (Markdown, CSV, JSON) only."""
    name: str
    function: Callable[[Structure], float]
    better: str
    digits: int
    unit: str
    worst_is_diagonal: bool
    worst_value: float = float("nan")
    headline_digits: Optional[int] = None

    def worst(self, diagonal_mm: float) -> float:
        return float(diagonal_mm) if self.worst_is_diagonal else self.worst_value

    def fmt(self, value, digits: Optional[int] = None) -> str:
        return fmt_number(value, self.digits if digits is None else digits)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name


#: the table: every place that computes, averages or shows these metrics reads it
METRICS: Dict[str, MetricDef] = {m.name: m for m in (
    MetricDef("Dice", dice, "higher", 3, "", False, 0.0, headline_digits=3),
    MetricDef("HD95", hd95, "lower", 2, "mm", True, headline_digits=1),
    MetricDef("NSD", nsd, "higher", 3, "", False, 0.0),
)}
#: the metrics measured on the surfaces (:func:`nnunet_ext.evaluation.case.surface_metrics`)
SURFACE_METRICS = ("HD95", "NSD")


def headline_metrics() -> Dict[str, MetricDef]:
    """The metrics of ``benchmark``'s one-screen summary and box plots, in table order."""
    return {k: m for k, m in METRICS.items() if m.headline_digits is not None}


def worst_values_text() -> str:
    """The worst value of each metric, fixed values first: ``Dice 0, NSD 0, HD95 the image diagonal``."""
    return ", ".join([f"{k} {m.worst_value:g}" for k, m in METRICS.items() if not m.worst_is_diagonal]
                     + [f"{k} the image diagonal" for k, m in METRICS.items() if m.worst_is_diagonal])


def fmt_number(value, digits: int) -> str:
    """``value`` with ``digits`` decimals; ``n/a`` for None or NaN."""
    if value is None:
        return NA
    try:
        v = float(value)
    except (TypeError, ValueError):
        return NA
    return NA if math.isnan(v) else f"{v:.{digits}f}"


def empty_kind(has_reference: bool, has_prediction: bool) -> str:
    if not has_reference and not has_prediction:
        return BOTH_EMPTY
    return ONE_EMPTY if has_reference != has_prediction else NONE_EMPTY


def empty_kind_of_counts(n_ref, n_pred) -> Optional[str]:
    """The kind from nnU-Net's per-case ``n_ref`` / ``n_pred`` (None if they are not given)."""
    try:
        return empty_kind(float(n_ref) > 0, float(n_pred) > 0)
    except (TypeError, ValueError):
        return None


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The diagonal of an image of ``shape`` voxels at ``spacing`` mm: the worst HD95."""
    return float(math.sqrt(sum((float(n) * float(s)) ** 2 for n, s in zip(shape, spacing))))


def empty_value(name: str, kind: str, diagonal_mm: float) -> float:
    """Value of metric ``name`` for a case whose masks are ``kind`` (BOTH_EMPTY or ONE_EMPTY)."""
    if kind == BOTH_EMPTY:
        return float("nan")
    if kind == ONE_EMPTY:
        return METRICS[name].worst(diagonal_mm)
    raise ValueError(f"empty_value: no empty mask (kind {kind!r})")


def summarize(values: Sequence[float], kinds: Optional[Sequence[Optional[str]]] = None) -> dict:
    """Mean, std (ddof 1), ``n`` (defined cases), ``n_nan`` (excluded: both empty) and ``n_one_empty`` (worst case,
    included) of one metric over cases. ``values`` already follow the rules above (as every summary of
    :mod:`nnunet_ext.evaluation.summary` does); ``kinds`` (per case, or None where unknown) only feed the count."""
    v = np.asarray([float("nan") if x is None else float(x) for x in values], dtype=float)
    ok = v[~np.isnan(v)]
    return {"mean": float(ok.mean()) if ok.size else float("nan"),
            "std": float(ok.std(ddof=1)) if ok.size > 1 else float("nan"),
            "n": int(ok.size), "n_nan": int(v.size - ok.size),
            N_ONE_EMPTY_KEY: int(sum(k == ONE_EMPTY for k in (kinds or [])))}


def fmt_mean(name: str, mean, std=None, n_one_empty: int = 0, digits: Optional[int] = None) -> str:
    """A table cell: ``mean ± std``, ``(k worst)`` when k cases had exactly one mask empty; ``n/a`` if undefined."""
    m = METRICS[name]
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return NA
    cell = m.fmt(mean, digits)
    if std is not None:
        cell += f" ± {m.fmt(std, digits)}"
    if n_one_empty:
        cell += f" ({int(n_one_empty)} worst)"
    return cell
