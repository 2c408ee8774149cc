"""Seconds per case of the coarse-to-fine cross-validation and the C2F / coarse-only time ratio, from the files the
runs leave (``fold_k/validation/c2f_times.json`` of ``crossval-c2f``, the ``predicting CASE`` time stamps of nnU-Net's
training logs, ``fine_only_times.json``); the command is ``benchmarks/c2f_cv_times.py`` (docs/c2f.md)."""
from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

_STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+): "


def validation_seconds(log_text: str) -> Dict[str, float]:
    """{case: seconds} of nnU-Net's final validation in one training log: from ``predicting CASE`` to the next
    ``predicting`` (loading the preprocessed case + sliding window; the export is queued to a worker). The last case
    has no successor (what follows it is the wait for the exports and the evaluation) and is left out."""
    events = []
    for m in re.finditer(_STAMP + r"predicting (\S+)\s*$", log_text, flags=re.M):
        events.append((datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f"), m.group(2)))
    return {case: (t_next - t).total_seconds() for (t, case), (t_next, _) in zip(events, events[1:])}


def c2f_times(folder: Path, folds: Sequence[int]) -> Dict[str, dict]:
    out = {}
    for f in folds:
        rec = json.loads((folder / f"fold_{f}" / "validation" / "c2f_times.json").read_text())
        for case, r in rec["cases"].items():
            # coarse only = what nnUNetv2_predict of the coarse model does per case: preprocess, network, export
            # (records before the stage split: the coarse stage's time included its preprocessing and export)
            coarse_only = r["coarse_s"] + r.get("preprocess_s", 0.0) + r.get("export_s", 0.0)
            out[case] = {"fold": f, "coarse_s": r["coarse_s"], "coarse_only_s": coarse_only,
                         "fine_s": r["fine_s"] + r.get("box_s", 0.0), "total_s": r["total_s"],
                         "fallback": r.get("fallback"), "box_fraction": r.get("fine_voxels_fraction")}
    return out


def trainer_validation_times(folder: Path, folds: Sequence[int]) -> Dict[str, float]:
    out = {}
    for f in folds:
        logs = sorted((folder / f"fold_{f}").glob("training_log_*.txt"))
        if not logs:
            raise SystemExit(f"no training log in {folder / f'fold_{f}'}")
        out.update(validation_seconds(logs[-1].read_text()))
    return out


def fine_only_times(folder: Path, folds: Sequence[int]) -> List[float]:
    per_case = []
    for f in folds:
        rec = json.loads((folder / f"fold_{f}" / "validation" / "fine_only_times.json").read_text())
        per_case += [rec["wall_s"] / rec["cases"]] * int(rec["cases"])
    return per_case


def _stats(v: Sequence[float]) -> dict:
    v = np.asarray(v, float)
    return {"n": int(v.size), "mean_s": float(v.mean()), "sd_s": float(v.std(ddof=1)) if v.size > 1 else 0.0}


def main(argv: Optional[Sequence[str]] = None, description: str = __doc__) -> int:
    """The command of ``benchmarks/c2f_cv_times.py`` (``description``: its help text)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--c2f", type=Path, required=True, help="results folder of nnunet-ext crossval-c2f")
    p.add_argument("--validation", nargs="*", default=[], metavar="NAME=FOLDER",
                   help="trained model folders whose nnU-Net final validation is timed from the training logs")
    p.add_argument("--fine-only", type=Path, default=None, help="folder with fold_k/validation/fine_only_times.json")
    p.add_argument("--folds", type=int, nargs="+", required=True)
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = p.parse_args(argv)

    c2f = c2f_times(args.c2f, args.folds)
    ratios = [r["total_s"] / r["coarse_only_s"] for r in c2f.values()]
    res = {"folds": args.folds, "c2f_cases": c2f,
           "C2F (total)": _stats([r["total_s"] for r in c2f.values()]),
           "C2F coarse network": _stats([r["coarse_s"] for r in c2f.values()]),
           "C2F preprocess + coarse network + export (= coarse only)":
               _stats([r["coarse_only_s"] for r in c2f.values()]),
           "C2F fine stage (box, fine network)": _stats([r["fine_s"] for r in c2f.values()]),
           "c2f_over_coarse_ratio_of_sums": sum(r["total_s"] for r in c2f.values()) /
                                           sum(r["coarse_only_s"] for r in c2f.values()),
           "c2f_over_coarse_ratio_per_case": {"mean": float(np.mean(ratios)), "min": float(np.min(ratios)),
                                              "max": float(np.max(ratios))},
           "fallbacks": sum(r["fallback"] is not None for r in c2f.values())}
    for spec in args.validation:
        name, folder = spec.split("=", 1)
        t = trainer_validation_times(Path(folder), args.folds)
        res[f"{name} (nnU-Net validation, sliding window)"] = {**_stats(list(t.values())), "cases": t}
    if args.fine_only is not None:
        res["fine only (nnUNetv2_predict)"] = _stats(fine_only_times(args.fine_only, args.folds))
    for k, v in res.items():
        if isinstance(v, dict) and "mean_s" in v:
            print(f"{k}: {v['mean_s']:.2f} ± {v['sd_s']:.2f} s per case (n = {v['n']})")
    r = res["c2f_over_coarse_ratio_per_case"]
    print(f"C2F / coarse-only time: {res['c2f_over_coarse_ratio_of_sums']:.3f} (ratio of sums; per case "
          f"{r['mean']:.3f}, {r['min']:.3f}-{r['max']:.3f}); coarse-stage fallbacks: {res['fallbacks']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0
