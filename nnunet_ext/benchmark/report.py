"""Report of ``nnunet-ext benchmark``: the Markdown table (in the spirit of DMC-Net's Table 3), the CSV and JSON
files, box plots and the one-screen summary. Every metric of :data:`nnunet_ext.evaluation.table.METRICS` is reported
(its label, digits and worst value from the table; the headline metrics also on the screen and as box plots), with
``n/a`` where nothing is defined."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunet_ext.benchmark.accuracy import class_key
from nnunet_ext.evaluation.table import (METRICS, N_ONE_EMPTY_KEY, NA, fmt_mean, fmt_number as _fmt, headline_metrics,
                                         worst_values_text)


def _p_fmt(p):
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return NA
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _diff_fmt(metric: str, v) -> str:
    """A signed difference with the metric's digits."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return NA
    return f"{float(v):+.{METRICS[metric].digits}f}"


def fold_table(trainers: Sequence[str], stats: dict, names: Dict[str, str]) -> Optional[str]:
    """Markdown table of the per-fold means (CV rows): one row per trainer, class and metric; None without folds."""
    folds = sorted({f for t in stats.values() for c in t.values() for d in c.values()
                    for f in (d.get("fold_means") or {})})
    if not folds:
        return None
    rows = []
    for tr in trainers:
        for c in sorted(stats.get(tr, {}), key=class_key):
            for m, d in stats[tr][c].items():
                fm = d.get("fold_means") or {}
                rows.append([tr, names.get(c, c), METRICS[m].label,
                             *[METRICS[m].fmt(fm[f]) if f in fm else "-" for f in folds]])
    return markdown_table(["Trainer", "Class", "Metric", *[f"fold {f}" for f in folds]], rows)


def class_names(dataset_json: Optional[dict]) -> Dict[str, str]:
    names = {}
    for k, v in ((dataset_json or {}).get("labels") or {}).items():
        key = str(v) if not isinstance(v, (list, tuple)) else str(tuple(v))
        names[key] = k
    return names


def build_rows(trainers: Sequence[str], figures: Dict[str, dict], stats: Optional[dict], missing: Dict[str, list],
               reference: Optional[str], names: Dict[str, str]) -> Tuple[List[str], List[List[str]], List[dict]]:
    """Markdown header + rows and CSV rows (numeric)."""
    header = ["Trainer"]
    fig_cols = bool(figures)
    if fig_cols:
        header += ["Params (M)", "GFLOPs", "Train step (ms)", "Peak mem (MiB)", "Inference (s)"]
    classes = []
    if stats:
        classes = sorted({c for t in stats.values() for c in t}, key=class_key)
        for c in classes:
            label = names.get(c, c)
            header += [f"{label} {METRICS[m].label}" for m in METRICS]
        header += ["Missing folds"]
    md_rows, csv_rows = [], []
    for tr in trainers:
        row, rec = [tr + (" (ref)" if stats and tr == reference else "")], {"trainer": tr}
        if fig_cols:
            f = figures.get(tr, {})
            if "error" in f:
                row += ["error"] + [""] * 4
                rec["error"] = f["error"]
            else:
                row += [_fmt(f.get("params", float("nan")) / 1e6, 2), _fmt(f.get("flops", float("nan")) / 1e9, 2),
                        _fmt(f.get("train_ms"), 0), _fmt(f.get("peak_mib"), 0), _fmt(f.get("infer_s"), 2)]
            for k in ("params", "flops", "train_ms", "peak_mib", "infer_s", "step", "memory_kind"):
                rec[k] = f.get(k)
        if stats:
            for c in classes:
                for m in METRICS:
                    d = stats.get(tr, {}).get(c, {}).get(m)
                    if not d:
                        row.append(NA)
                        continue
                    cell = fmt_mean(m, d["mean"], d["std"], d.get(N_ONE_EMPTY_KEY, 0)) + f" (n={d['n']}"
                    if "p" in d:
                        cell += (f"; Δ {_diff_fmt(m, d.get('mean_diff'))} "
                                 f"[{_diff_fmt(m, d.get('ci_low'))}, {_diff_fmt(m, d.get('ci_high'))}], "
                                 f"p={_p_fmt(d['p'])}, pairs={d['n_pairs']}")
                    row.append(cell + ")")
                    for k in ("mean", "std", "n", "n_nan", N_ONE_EMPTY_KEY, "p", "statistic", "n_pairs", "mean_diff",
                              "ci_low", "ci_high"):
                        rec[f"{names.get(c, c)}_{m}_{k}"] = d.get(k)
                    for f, v in (d.get("fold_means") or {}).items():
                        rec[f"{names.get(c, c)}_{m}_fold{f}_mean"] = v
            row.append(", ".join(map(str, missing.get(tr, []))) or "none")
            rec["missing_folds"] = " ".join(map(str, missing.get(tr, [])))
        md_rows.append(row)
        csv_rows.append(rec)
    return header, md_rows, csv_rows


def markdown_table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def boxplots(per_case: Dict[str, Dict[str, Dict[str, Dict[str, float]]]], metric: str, path: Path,
             names: Dict[str, str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = sorted({c for cases in per_case.values() for per in cases.values() for c in per}, key=class_key)
    trainers = list(per_case)
    fig, axes = plt.subplots(1, max(1, len(classes)), figsize=(max(4.0, 0.9 * len(trainers) + 2) * max(1, len(classes)),
                                                              4.5), squeeze=False)
    for ax, c in zip(axes[0], classes):
        data = []
        for tr in trainers:
            v = np.array([per_case[tr][k][c][metric] for k in per_case[tr] if c in per_case[tr][k]], float)
            data.append(v[~np.isnan(v)])
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(trainers) + 1))
        ax.set_xticklabels(trainers, rotation=35, ha="right", fontsize=8)
        ax.set_title(f"{names.get(c, c)}: {metric}" + (f" ({METRICS[metric].unit})" if METRICS[metric].unit else ""))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(out: Path, trainers: Sequence[str], figures: Dict[str, dict], per_case: Optional[dict],
                  stats: Optional[dict], missing: Dict[str, list], reference: Optional[str], names: Dict[str, str],
                  meta: dict) -> Tuple[str, List[Path]]:
    out.mkdir(parents=True, exist_ok=True)
    header, rows, recs = build_rows(trainers, figures, stats, missing, reference, names)
    table = markdown_table(header, rows)
    written = []
    md = ["# nnunet-ext benchmark", "", f"Command: `{meta.get('command', '')}`", ""]
    if figures:
        md += [f"Model figures: configuration `{meta.get('configuration')}`, patch {meta.get('patch_size')}, "
               f"batch {meta.get('batch_size')}, device {meta.get('device')}; FLOPs of one forward pass at batch 1 "
               f"(torch FlopCounterMode, multiply-add = 2 FLOPs, deep supervision off); train step = median of "
               f"{meta.get('repeats')} after {meta.get('warmup')} warm-up; peak memory = "
               f"{'CUDA max_memory_allocated' if meta.get('device') == 'cuda' else 'peak RSS rise of a fresh process'}"
               f"; inference = sliding window over one volume {meta.get('volume_shape')} "
               f"(mirroring {'on' if meta.get('mirroring') else 'off'}).", ""]
    if stats:
        md += [f"Accuracy: mean ± std over the n cases with a defined value; vs `{reference}`: Δ = mean of the "
               f"paired per-case differences (row - reference) with its paired bootstrap "
               f"{meta.get('bootstrap', '95 % CI')}, and p = paired two-sided Wilcoxon signed-rank test, both on "
               f"the cases both rows have (pairs = their number, NaN pairs dropped). p and CI cover the variance "
               f"between cases, not between trainings (one model per fold, no reruns): docs/benchmarks.md. Empty "
               f"masks (Metrics Reloaded, docs/metrics.md): cases with both masks empty are excluded (NaN); "
               f"'(k worst)' = k cases with exactly one mask empty, counted at the worst value "
               f"({worst_values_text()}); n/a = nothing defined.", "",
               f"Scoring: post-processing **{meta.get('postprocessing', 'none')}** applied to every row before "
               f"scoring; NSD **{meta.get('nsd_convention', 'voxel')}** convention, tolerance "
               f"{meta.get('nsd_tolerance_mm')} mm."
               + "".join(f" `{k}`: {v}." for k, v in (meta.get("postprocessing_files") or {}).items()), ""]
    md += [table, ""]
    folds_md = fold_table(trainers, stats, names) if stats else None
    if folds_md:
        md += ["Per-fold means (each fold's validation cases, scored by its own fold model):", "", folds_md, ""]
    notes = [f"- {tr}: {'; '.join(f.get('notes', []))}" for tr, f in figures.items() if f.get("notes")]
    notes += [f"- {tr}: error: {f['error']}" for tr, f in figures.items() if "error" in f]
    if notes:
        md += ["Notes:", *notes, ""]
    (out / "benchmark.md").write_text("\n".join(md))
    written.append(out / "benchmark.md")
    keys = []
    for r in recs:
        keys += [k for k in r if k not in keys]
    with open(out / "benchmark.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(recs)
    written.append(out / "benchmark.csv")
    if per_case:
        with open(out / "per_case.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["trainer", "case", "class", *METRICS])
            for tr, cases in per_case.items():
                for k in sorted(cases):
                    for c in sorted(cases[k], key=class_key):
                        w.writerow([tr, k, names.get(c, c), *[cases[k][c][m] for m in METRICS]])
        written.append(out / "per_case.csv")
        for m in headline_metrics():
            p = out / f"boxplot_{m.lower()}.png"
            boxplots(per_case, m, p, names)
            written.append(p)
    (out / "benchmark.json").write_text(json.dumps(
        {"meta": meta, "figures": figures, "accuracy": stats, "missing_folds": missing, "per_case": per_case},
        indent=1, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o)))
    written.append(out / "benchmark.json")
    return table, written


def summary_text(trainers, figures, stats, missing, reference, names, meta: Optional[dict] = None) -> str:
    """A compact, one-screen summary (the headline metrics of the table, p-values vs the reference, the scoring
    rules)."""
    lines = []
    w = max([len(t) for t in trainers] + [7])
    if figures:
        lines.append(f"{'trainer':<{w}} {'params(M)':>9} {'GFLOPs':>8} {'step(ms)':>9} {'mem(MiB)':>9} {'infer(s)':>8}")
        for tr in trainers:
            f = figures.get(tr, {})
            if "error" in f:
                lines.append(f"{tr:<{w}} ERROR {f['error'][:60]}")
                continue
            lines.append(f"{tr:<{w}} {f['params'] / 1e6:>9.2f} {f['flops'] / 1e9:>8.2f} "
                         f"{_fmt(f.get('train_ms'), 0):>9} {_fmt(f.get('peak_mib'), 0):>9} "
                         f"{_fmt(f.get('infer_s'), 2):>8}")
    if stats:
        classes = sorted({c for t in stats.values() for c in t}, key=class_key)
        head = headline_metrics()
        widths = {m: 22 if i == 0 else 20 for i, m in enumerate(head)}  # the first column also names the class
        lines.append("")
        lines.append(f"{'trainer':<{w}} " + " ".join(
            " ".join(f"{names.get(c, c)[:10] + ' ' + m if i == 0 else m:>{widths[m]}}" for i, m in enumerate(head))
            for c in classes) + "  missing")
        for tr in trainers:
            cells = []
            for c in classes:
                for m, md in head.items():
                    d = stats.get(tr, {}).get(c, {}).get(m, {})
                    s = f"{_fmt(d.get('mean'), md.headline_digits)}±{_fmt(d.get('std'), md.headline_digits)}"
                    if d.get(N_ONE_EMPTY_KEY):
                        s += f"({d[N_ONE_EMPTY_KEY]}w)"
                    if "p" in d:
                        s += f" p={_p_fmt(d['p'])}"
                    cells.append(f"{s:>{widths[m]}}")
            lines.append(f"{tr:<{w}} " + " ".join(cells) + "  " + (",".join(map(str, missing.get(tr, []))) or "-"))
        if meta:
            lines.append(f"scoring: post-processing {meta.get('postprocessing', 'none')}; NSD "
                         f"{meta.get('nsd_convention', 'voxel')} convention, tolerance {meta.get('nsd_tolerance_mm')} mm")
        rest = ", ".join(m for m in METRICS if m not in head)
        lines.append(f"(p: paired Wilcoxon vs {reference}; (kw): k cases with one mask empty, at the worst value; "
                     f"{rest + ', ' if rest else ''}n, bootstrap CIs, per-fold means and counts in benchmark.md)")
    return "\n".join(lines)
