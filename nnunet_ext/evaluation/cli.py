"""``nnunet-ext evaluate``: nnU-Net's evaluation of a prediction folder, or of a trained model's validation folds, with
every metric of :data:`nnunet_ext.evaluation.table.METRICS` (:mod:`nnunet_ext.evaluation.summary`)."""
from __future__ import annotations

import math
import os
import warnings

from nnunet_ext.checks import check_output_path
from nnunet_ext.errors import UserError
from nnunet_ext.evaluation.postprocessing import DEFAULT_RULE, RULE_HELP, RULES
from nnunet_ext.evaluation.summary import default_csv, evaluate_folder, evaluate_trained_model_folds
from nnunet_ext.evaluation.surface import DEFAULT_NSD_CONVENTION, NSD_CONVENTIONS, check_nsd_convention_option
from nnunet_ext.evaluation.table import METRICS, N_BOTH_EMPTY_KEY, N_ONE_EMPTY_KEY, fmt_mean, worst_values_text

__all__ = ["cmd_evaluate", "register_cli", "add_nsd_convention_argument", "add_postprocessing_argument"]


def _print_summary(result: dict, title: str) -> None:
    print(title)
    sc = result.get("scoring", {})
    print(f"  NSD: {sc.get('nsd_convention')} convention, tolerance {sc.get('nsd_tolerance_mm')} mm")

    def cells(m: dict) -> str:
        return "  ".join(f"{k} {fmt_mean(k, m.get(k), n_one_empty=m.get(N_ONE_EMPTY_KEY, 0))}"
                         + (f" {METRICS[k].unit}" if METRICS[k].unit else "") for k in METRICS)

    for k, m in result["mean"].items():
        print(f"  class {k}: {cells(m)}  (both masks empty in {m[N_BOTH_EMPTY_KEY]} case(s), excluded)")
    print(f"  foreground mean: {cells(result['foreground_mean'])}")
    print(f"  (k worst): k case(s) with exactly one mask empty, counted at the worst value ({worst_values_text()})")


def cmd_evaluate(args) -> int:
    if args.np < 1:
        raise UserError(f"-np must be >= 1, got {args.np}")
    if not (math.isfinite(args.nsd_tolerance_mm) and args.nsd_tolerance_mm >= 0):
        raise UserError(f"--nsd-tolerance-mm must be >= 0, got {args.nsd_tolerance_mm}")
    check_nsd_convention_option(args.nsd_convention)
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
                                               gt_folder=args.gt_folder, nsd_convention=args.nsd_convention)
        for fold in sorted(res):
            summary_file = os.path.join(args.folds_of, f"fold_{fold}", "validation", "summary_surface.json")
            _print_summary(res[fold], f"fold {fold}: {summary_file}")
        for w in caught:
            print(f"warning: {w.message}")
        return 0
    if args.gt_folder is None or args.pred_folder is None:
        raise UserError("GT_FOLDER and PRED_FOLDER are required (or --folds-of MODEL_FOLDER)")
    if not args.djfile or not args.pfile:
        raise UserError("-djfile dataset.json and -pfile plans.json are required")
    out = args.o or os.path.join(args.pred_folder, "summary_surface.json")
    check_output_path(out, "-o output file", folder=False)  # e.g. a path below a regular file
    res = evaluate_folder(args.gt_folder, args.pred_folder, args.djfile, args.pfile, out, args.nsd_tolerance_mm,
                          args.np, chill=args.chill, nsd_convention=args.nsd_convention)
    _print_summary(res, f"{out} (+ {default_csv(out)}), {len(res['metric_per_case'])} case(s)")
    return 0


def add_nsd_convention_argument(s) -> None:
    """``--nsd-convention voxel|surfel`` (evaluate, benchmark, crossval-c2f); checked by the command, so an unknown
    value is a one-line UserError."""
    s.add_argument("--nsd-convention", default=DEFAULT_NSD_CONVENTION, metavar="|".join(NSD_CONVENTIONS),
                   help="how NSD counts a surface: voxel = surface voxels (MONAI's default; default), surfel = "
                        "DeepMind's area-weighted surface elements (MSD challenge, most published NSD figures); "
                        "docs/metrics.md")


def add_postprocessing_argument(s) -> None:
    """``--postprocessing none|largest|nnunet`` (benchmark, crossval-c2f; :mod:`nnunet_ext.evaluation.postprocessing`);
    checked by the command (``check_rule``), so an unknown value is a one-line UserError."""
    s.add_argument("--postprocessing", default=DEFAULT_RULE, metavar="|".join(RULES), help=RULE_HELP)


def register_cli(subparsers, name: str, help: str) -> None:
    """Adds the ``evaluate`` sub-command (``name``, help line ``help``: nnunet_ext.commands)."""
    s = subparsers.add_parser(
        name, help=help,
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
    add_nsd_convention_argument(s)
    s.add_argument("-np", type=int, default=1, help="number of processes (default 1)")
    s.add_argument("--chill", action="store_true",
                   help="do not fail when a reference case has no prediction (evaluate the present ones)")
    s.add_argument("--folds-of", default=None, metavar="MODEL_FOLDER",
                   help="evaluate fold_X/validation of a trained model folder (nnUNet_results/DatasetXXX/"
                        "Trainer__Plans__Config) instead; writes fold_X/validation/summary_surface.json")
    s.set_defaults(func=cmd_evaluate)
