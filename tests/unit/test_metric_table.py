"""The metric table (nnunet_ext.evaluation.table.METRICS) drives evaluation and the benchmark report: a metric added
to it is computed by its own function and shows up in every part of the report, never silently left out."""
from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest

from nnunet_ext.benchmark.accuracy import accuracy_stats, per_case_table
from nnunet_ext.benchmark.report import summary_text, write_outputs
from nnunet_ext.evaluation.case import compute_case_metrics
from nnunet_ext.evaluation.table import METRICS, MetricDef


def _recall(s) -> float:
    """A dummy metric: share of the reference voxels that are predicted."""
    tp, _, fn, _ = s.counts
    return float(tp) / float(tp + fn) if tp + fn else float("nan")


class _Reader:
    """nnU-Net's reader/writer interface (``read_seg``) over arrays in memory."""

    def __init__(self, segs):
        self.segs = segs

    def read_seg(self, name):
        return self.segs[name][None], {"spacing": (2.0, 1.0, 1.0)}


def _case():
    ref = np.zeros((6, 8, 8), np.uint8)
    ref[1:5, 2:6, 2:6] = 1
    pred = ref.copy()
    pred[1:5, 2:6, 2:4] = 0  # half of the reference predicted
    return _Reader({"ref": ref, "pred": pred})


def test_evaluation_calls_the_table_functions(monkeypatch):
    monkeypatch.setitem(METRICS, "HD95", dataclasses.replace(METRICS["HD95"], function=lambda s: 42.0))
    monkeypatch.setitem(METRICS, "Recall", MetricDef("Recall", _recall, "higher", 4, "", False, 0.0))
    m = compute_case_metrics("ref", "pred", _case(), [1])["metrics"][1]
    assert m["HD95"] == 42.0 and m["Recall"] == 0.5
    assert list(m) == ["Dice", "IoU", "FP", "TP", "FN", "TN", "n_pred", "n_ref", "HD95", "NSD", "Recall"]


def _summary(values):
    """nnU-Net-layout summary of class 1 from {case: (dice, hd95, nsd, recall)}."""
    return {"metric_per_case": [
        {"reference_file": f"/gt/{c}.nii.gz", "prediction_file": f"/pred/{c}.nii.gz",
         "metrics": {"1": {"Dice": v[0], "HD95": v[1], "NSD": v[2], "Recall": v[3], "n_ref": 10, "n_pred": 9}}}
        for c, v in values.items()]}


@pytest.mark.parametrize("headline", [None, 2])
def test_a_metric_added_to_the_table_appears_in_the_report(monkeypatch, tmp_path, headline):
    monkeypatch.setitem(METRICS, "Recall", MetricDef("Recall", _recall, "higher", 4, "", False, 0.0,
                                                     headline_digits=headline))
    rng = np.random.default_rng(0)
    per_case = {tr: per_case_table([_summary({f"case_{i}": (rng.uniform(.5, .9), rng.uniform(1, 9),
                                                            rng.uniform(.5, 1), rng.uniform(.5, 1))
                                              for i in range(8)})]) for tr in ("ref", "other")}
    stats = accuracy_stats(per_case, "ref")
    d = stats["other"]["1"]["Recall"]
    assert "p" in d and d["n"] == 8
    names = {"1": "organ"}
    write_outputs(tmp_path, ["ref", "other"], {}, per_case, stats, {"ref": [], "other": []}, "ref", names,
                  {"command": "c", "nsd_tolerance_mm": 2.0})
    md = (tmp_path / "benchmark.md").read_text()
    for m in METRICS:  # every metric of the table is a column, shown with the table's digits
        assert f"| organ {METRICS[m].label} " in md or f" organ {METRICS[m].label} |" in md, m
    assert (f"{d['mean']:.4f} ± {d['std']:.4f} (n=8; Δ {d['mean_diff']:+.4f} [{d['ci_low']:+.4f}, "
            f"{d['ci_high']:+.4f}], p=") in md  # n, the bootstrap CI of the mean difference, with the table's digits
    assert "(Dice 0, NSD 0, Recall 0, HD95 the image diagonal)" in md
    with open(tmp_path / "per_case.csv") as f:
        assert next(csv.reader(f)) == ["trainer", "case", "class", "Dice", "HD95", "NSD", "Recall"]
    with open(tmp_path / "benchmark.csv") as f:
        assert "organ_Recall_mean" in next(csv.reader(f))
    screen = summary_text(["ref", "other"], {}, stats, {"ref": [], "other": []}, "ref", names)
    assert (tmp_path / "boxplot_recall.png").exists() == (headline is not None)
    if headline is None:
        assert "NSD, Recall, n, bootstrap CIs" in screen
    else:
        assert f"{d['mean']:.2f}±{d['std']:.2f}" in screen and "NSD, n, bootstrap CIs" in screen
