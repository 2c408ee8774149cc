"""Cross-validation of a coarse-to-fine pair (``nnunet-ext crossval-c2f``): for every fold k, coarse fold k and fine
fold k predict fold k's validation cases (``splits_final.json``; raw images from ``nnUNet_raw``) with the C2F or
two-stage pipeline of :mod:`nnunet_ext.c2f.pipeline` (the ``_fine`` trainers skip nnU-Net's own final validation:
``trainers/c2f.py``). The results folder has nnU-Net's layout of a trained model (``plans.json``, ``dataset.json``,
``fold_k/validation/CASE.nii.gz`` + a summary with Dice, HD95 and NSD from :mod:`nnunet_ext.evaluation.summary`:
``summary.json`` under ``--postprocessing none``, :func:`summary_name` under another rule), so the pair can be scored
beside trainers: ``nnunet-ext benchmark --cv -tr nnUNetTrainer C2F=RESULTS_FOLDER ...`` (which scores the written
predictions again under its own rule).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from nnunet_ext.c2f.cli import add_pair_arguments
from nnunet_ext.c2f.models import ModelRef, check_compatible, load_predictor, resolve_model, torch_device
from nnunet_ext.c2f.modes import DEFAULT_MODE, TWO_STAGE_MARGINS_VOX, C2FMode, get_mode
from nnunet_ext.c2f.pipeline import check_options, list_cases, pair_record, resolve_margin, run_cases
from nnunet_ext.errors import UserError, dataset_name as _dataset_name
from nnunet_ext.evaluation.cli import add_nsd_convention_argument, add_postprocessing_argument
from nnunet_ext.evaluation.postprocessing import (DEFAULT_RULE, Postprocessing, check_rule, postprocessing_for,
                                                  results_folder_pkl)
from nnunet_ext.evaluation.summary import fold_summary_name
from nnunet_ext.evaluation.table import NA, N_BOTH_EMPTY_KEY, fmt_number
from nnunet_ext.evaluation.surface import DEFAULT_NSD_CONVENTION, check_nsd_convention_option

PAIR_FILE = "crossval_c2f.json"


def summary_name(postprocessing: Postprocessing) -> str:
    """A fold's summary: ``summary.json`` under the rule ``none`` (nnU-Net's name, which
    ``nnUNetv2_determine_postprocessing`` reads as the unfiltered baseline), else the name ``benchmark --cv`` gives
    that rule's scoring of the same folder (:func:`~nnunet_ext.evaluation.summary.fold_summary_name`,
    ``summary_surface_pp_<rule>.json``), so a run under another rule never overwrites the baseline."""
    return "summary.json" if postprocessing.rule == "none" else fold_summary_name(postprocessing)


def score_fold(gt_folder: Path, val_dir: Path, results_folder: Path, postprocessing: Postprocessing,
               nsd_tolerance_mm: float, nsd_convention: str, num_processes: int = 1) -> dict:
    """Dice, HD95 and NSD of one fold's predictions (``val_dir``) against ``gt_folder`` under ``postprocessing``
    (``results_folder``'s ``dataset.json`` and ``plans.json``), written to ``val_dir`` / :func:`summary_name`."""
    from nnunet_ext.evaluation.summary import evaluate_folder

    return evaluate_folder(gt_folder, val_dir, results_folder / "dataset.json", results_folder / "plans.json",
                           output_file=val_dir / summary_name(postprocessing), nsd_tolerance_mm=nsd_tolerance_mm,
                           num_processes=num_processes, chill=True, nsd_convention=nsd_convention,
                           postprocessing=postprocessing)


def default_results_folder(dataset: str, coarse: ModelRef, fine: ModelRef, mode: Union[str, C2FMode]) -> Path:
    """``nnUNet_results/DatasetXXX/<prefix>__<coarse trainer>__<coarse config>__<fine trainer>__<fine config>
    [__plans]``, ``<prefix>`` the mode's ``folder_prefix`` (``C2F``, ``TwoStage``)."""
    name = "__".join([get_mode(mode).folder_prefix, coarse.trainer, coarse.configuration, fine.trainer,
                      fine.configuration])
    if coarse.plans_name != "nnUNetPlans" or fine.plans_name != "nnUNetPlans":
        name += f"__{coarse.plans_name}" + (f"__{fine.plans_name}" if fine.plans_name != coarse.plans_name else "")
    return Path(os.environ["nnUNet_results"]) / dataset / name


def _env_folder(var: str) -> Path:
    v = os.environ.get(var)
    if not v:
        raise UserError(f"{var} is not set")
    return Path(v)


def load_splits(dataset: str, folds: Optional[Sequence[str]]) -> Dict[int, List[str]]:
    """``{fold: validation case ids}`` of ``splits_final.json``; UserError for a missing file, a fold it does not
    have, or a fold without validation cases."""
    splits_file = _env_folder("nnUNet_preprocessed") / dataset / "splits_final.json"
    if not splits_file.is_file():
        raise UserError(f"{splits_file} does not exist (nnUNetv2_train writes it; train the models first)")
    try:
        splits = json.loads(splits_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {splits_file}: {e}") from None
    use = list(range(len(splits))) if not folds else []
    for f in folds or []:
        if not str(f).isdigit():
            raise UserError(f"-f {f}: cross-validation folds are numbers (fold 'all' has no validation cases)")
        use.append(int(f))
    out = {}
    for f in use:
        if f >= len(splits):
            raise UserError(f"fold {f}: {splits_file} has only {len(splits)} folds")
        val = list(splits[f].get("val", []))
        if not val:
            raise UserError(f"fold {f} has no validation cases in {splits_file}")
        out[f] = val
    return out


def crossval_c2f(dataset, coarse_spec: str, fine_spec: str, folds=None, mode: Union[str, C2FMode] = DEFAULT_MODE,
                 output=None, fallback: str = "coarse", margin_mm: Optional[float] = None,
                 coarse_step: float = 0.9, fine_step: float = 0.5, min_component_fraction: float = 0.2,
                 device: str = "auto", checkpoint: str = "checkpoint_final.pth", disable_mirroring: bool = False,
                 ts_margins=TWO_STAGE_MARGINS_VOX, continue_prediction: bool = False,
                 nsd_tolerance_mm: float = 2.0, num_processes: int = 1, postprocessing: str = DEFAULT_RULE,
                 nsd_convention: str = DEFAULT_NSD_CONVENTION) -> Path:
    """Validate everything (models of every fold, splits, raw images, ground truth), then predict and score fold by
    fold. Returns the results folder. Bad input raises ``UserError`` before anything is written.

    ``postprocessing`` (:mod:`nnunet_ext.evaluation.postprocessing`): the rule applied to every prediction before
    scoring (the written predictions are the pipeline's); ``nnunet`` reads the results folder's own
    ``crossval_results_folds_<folds>/postprocessing.pkl`` (one rule for every results folder in nnU-Net's trainer
    layout; make it with ``nnUNetv2_find_best_configuration``/``nnUNetv2_determine_postprocessing`` after a run
    under ``none``). ``nsd_convention``: ``voxel`` / ``surfel``."""
    from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name

    check_options(coarse_step, fine_step, margin_mm, min_component_fraction, mode, fallback, ts_margins)
    check_rule(postprocessing)
    check_nsd_convention_option(nsd_convention)
    mode = get_mode(mode)
    ds = _dataset_name(dataset)
    split = load_splits(ds, folds)
    refs = {}
    for f in split:
        coarse = resolve_model("coarse", ds, coarse_spec, [str(f)], checkpoint)
        fine = resolve_model("fine", ds, fine_spec, [str(f)], checkpoint)
        check_compatible(coarse, fine)
        refs[f] = (coarse, fine)
    coarse, fine = refs[next(iter(split))]
    out = Path(output) if output is not None else default_results_folder(ds, coarse, fine, mode)
    from nnunet_ext.checks import check_output_path

    check_output_path(out, "output folder")
    pp = postprocessing_for(postprocessing, results_folder_pkl(out, list(split)) if postprocessing == "nnunet"
                            else None, what="crossval-c2f")
    dj = fine.dataset_json
    fe = dj["file_ending"]
    raw_images = _env_folder("nnUNet_raw") / ds / "imagesTr"
    gt = _env_folder("nnUNet_preprocessed") / ds / "gt_segmentations"
    all_cases = list_cases(raw_images, fe, len(dj.get("channel_names", dj.get("modality", {}))))
    for f, val in split.items():
        for case in val:
            if case not in all_cases:
                raise UserError(f"fold {f}: validation case {case} has no image in {raw_images}")
            if not (gt / f"{case}{fe}").is_file():
                raise UserError(f"fold {f}: no ground truth {gt / (case + fe)} (run nnUNetv2_preprocess)")
    from nnunet_ext.checks import check_case_files, model_ndim  # files read whole, finite
    ndim = model_ndim(fine.plans, fine.configuration)
    for c in dict.fromkeys(c for val in split.values() for c in val):
        check_case_files(all_cases[c], ndim, fine.configuration, len(dj.get("channel_names", dj.get("modality", {}))))
    dev = torch_device(device)

    out.mkdir(parents=True, exist_ok=True)
    (out / "plans.json").write_text(json.dumps(fine.plans, indent=2))
    (out / "dataset.json").write_text(json.dumps(dj, indent=2))
    margin = resolve_margin(margin_mm, fine.trainer)  # once: the boxes' margin is the recorded one
    pair = {"what": "coarse-to-fine pair scored by nnunet-ext crossval-c2f", "mode": mode.name, "dataset": ds,
            "coarse": coarse_spec, "fine": fine_spec, "folds": list(split), "fallback": fallback,
            "coarse_step": coarse_step, "fine_step": fine_step, "checkpoint": checkpoint,
            "mirroring": not disable_mirroring, **mode.margins_record(*margin, ts_margins),
            "min_component_fraction": min_component_fraction, "postprocessing": pp.record(),
            "nsd_convention": nsd_convention, "nsd_tolerance_mm": nsd_tolerance_mm}
    (out / PAIR_FILE).write_text(json.dumps(pair, indent=2))
    reader = recursive_find_reader_writer_by_name(coarse.plans["image_reader_writer"])()
    secs: List[float] = []
    for f, val in split.items():
        coarse, fine = refs[f]
        t0 = time.perf_counter()
        coarse_p = load_predictor(coarse, coarse_step, dev, not disable_mirroring)
        fine_p = load_predictor(fine, fine_step, dev, not disable_mirroring)
        val_dir = out / f"fold_{f}" / "validation"
        print(f"fold {f}: {len(val)} validation cases -> {val_dir}")
        record = pair_record(coarse, fine, dev, mode, coarse_step, fine_step, margin, ts_margins,
                             min_component_fraction, fallback)
        run_cases({c: all_cases[c] for c in val}, val_dir, coarse_p, fine_p, reader, fe, record, mode,
                  margin, min_component_fraction, ts_margins, fallback, continue_prediction)
        secs += [r["total_s"] for c, r in record["cases"].items() if c in val]
        summary = score_fold(gt, val_dir, out, pp, nsd_tolerance_mm, nsd_convention, num_processes)
        print(f"fold {f}: mean Dice {fold_dice_text(summary)} (post-processing {pp.describe()}, NSD "
              f"{nsd_convention} at {nsd_tolerance_mm:g} mm; {time.perf_counter() - t0:.0f} s)")
    print(f"{len(secs)} cases, {float(np.mean(secs)):.2f} s per case (coarse + fine); results in {out}")
    print(f"compare: nnunet-ext benchmark --skip-models --cv -d {ds} -c {fine.configuration} --folds "
          f"{' '.join(map(str, split))} -tr nnUNetTrainer {out.name}={out} --reference nnUNetTrainer "
          f"--postprocessing {postprocessing} --nsd-convention {nsd_convention} --out BENCH")
    return out


def fold_dice_text(summary: dict) -> str:
    """Per-class mean Dice of a fold's ``summary.json``, e.g. ``1: 0.8509, 2: n/a (empty in reference and prediction
    in 2 of 2 cases)``: a class absent from every case has no mean (nnU-Net's NaN), and a NaN foreground mean would
    hide the classes that do have one."""
    n = len(summary.get("metric_per_case", []))
    parts = []
    for label, m in summary.get("mean", {}).items():
        text = fmt_number(m.get("Dice", float("nan")), 4)
        if text == NA:
            text += f" (empty in reference and prediction in {m.get(N_BOTH_EMPTY_KEY, 0)} of {n} cases)"
        parts.append(f"{label}: {text}")
    return ", ".join(parts) or NA


def cmd_crossval_c2f(args) -> int:
    crossval_c2f(args.d, args.coarse, args.fine, folds=args.f, mode=args.mode, output=args.o, fallback=args.fallback,
                 margin_mm=args.margin_mm, coarse_step=args.coarse_step, fine_step=args.step_size,
                 min_component_fraction=args.min_component_fraction, device=args.device, checkpoint=args.chk,
                 disable_mirroring=args.disable_tta, ts_margins=tuple(args.two_stage_margins),
                 continue_prediction=args.continue_prediction, nsd_tolerance_mm=args.nsd_tolerance_mm,
                 num_processes=args.np, postprocessing=args.postprocessing, nsd_convention=args.nsd_convention)
    return 0


def register_cli(subparsers, name: str, help: str) -> None:
    s = subparsers.add_parser(
        name, help=help,
        description="For every fold k: coarse fold k and fine fold k predict fold k's validation cases "
                    "(splits_final.json, images from nnUNet_raw) with predict-c2f's pipeline; predictions and a "
                    "summary (Dice, HD95, NSD; summary.json under --postprocessing none, "
                    "summary_surface_pp_RULE.json otherwise) go to fold_k/validation of a results folder in nnU-Net's "
                    "layout, which 'nnunet-ext benchmark --cv -tr NAME=FOLDER' scores as a row beside trainers.")
    s.add_argument("-f", nargs="+", default=None, metavar="FOLD",
                   help="folds (default: every fold of splits_final.json)")
    s.add_argument("-o", default=None, help="results folder (default: nnUNet_results/DatasetXXX/"
                                            "C2F__<coarse trainer>__<config>__<fine trainer>__<config>)")
    add_pair_arguments(s)
    s.add_argument("--nsd-tolerance-mm", type=float, default=2.0, help="NSD tolerance (default 2 mm)")
    add_nsd_convention_argument(s)
    add_postprocessing_argument(s)
    s.add_argument("-np", type=int, default=1, help="processes for the evaluation (default 1)")
    s.set_defaults(func=cmd_crossval_c2f)
