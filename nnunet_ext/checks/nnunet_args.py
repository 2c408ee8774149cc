"""nnU-Net's own arguments checked before nnU-Net runs: ``nnUNetv2_train`` / ``nnUNetv2_predict`` flags re-parsed
(the ``nnunet-ext train`` / ``predict`` / ``predict-slices`` pass-throughs) and predict-c2f's folds and output folder.

What nnU-Net would turn into a traceback, or into half a written output, is a one-line
:class:`~nnunet_ext.errors.UserError` naming the value. Flags nnU-Net's own argparse reports (a missing positional, a
flag without its value) are left to it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence

from nnunet_ext.checks.files import check_checkpoint, check_output_path
from nnunet_ext.checks.geometry import check_prediction_inputs
from nnunet_ext.errors import UserError, dataset_name, preprocessed_file
from nnunet_ext.lookup import find_trainer_class


def parse_folds(values: Optional[Sequence[str]], flag: str = "-f") -> Optional[List]:
    """nnU-Net's folds: non-negative integers or ``all``; UserError naming the bad value."""
    if values is None:
        return None
    out = []
    for v in values:
        if v == "all":
            out.append(v)
        elif str(v).isdigit():
            out.append(int(v))
        else:
            raise UserError(f"{flag} {v!r}: a fold is a non-negative integer or 'all'")
    return out


def previous_stage(plans: dict, configuration: str) -> Optional[str]:
    """The previous stage a configuration's network takes as extra input channels (nnU-Net's ``previous_stage``,
    e.g. ``3d_cascade_fullres`` -> ``3d_lowres``), following ``inherits_from`` as nnU-Net's PlansManager does; None
    for a single-stage configuration."""
    confs, c, seen = plans.get("configurations", {}), configuration, []
    while c in confs and c not in seen:
        seen.append(c)
        if confs[c].get("previous_stage"):
            return str(confs[c]["previous_stage"])
        c = confs[c].get("inherits_from")
    return None


def check_not_cascade(plans: dict, configuration: str, what: str, hint: str = "") -> None:
    """UserError when ``configuration`` is a cascade stage (:func:`previous_stage`): its network needs the previous
    stage's segmentation as input, which ``what`` does not provide."""
    prev = previous_stage(plans, configuration)
    if prev is not None:
        raise UserError(f"{what}: configuration {configuration!r} is a cascade stage (its network takes the "
                        f"segmentation of {prev!r} as input), which {hint or 'this command does not provide'}")


def check_c2f_arguments(folds, output_folder) -> Optional[List]:
    """predict-c2f's arguments checked before anything else: the folds (returned parsed) and the output folder."""
    check_output_path(output_folder, "output folder")
    return parse_folds(folds)


def check_train_args(argv: Sequence[str]) -> None:
    """Arguments of ``nnUNetv2_train DATASET CONFIGURATION FOLD ...`` that nnU-Net turns into tracebacks: the
    dataset, the fold, the configuration (when the plans exist) and the trainer name (nnU-Net's lookup, ours
    registered). UserError naming the value."""
    if not argv or any(a in ("-h", "--help") for a in argv):
        return
    ns = _known_args(argv, {"-tr": "nnUNetTrainer", "-p": "nnUNetPlans", "-num_gpus": "1", "-device": "cuda"},
                     ("dataset", "configuration", "fold"))
    if ns is None or ns.fold is None:
        return  # nnU-Net's own argparse reports the missing positionals
    parse_folds([ns.fold], "FOLD")
    _number(ns.num_gpus, "-num_gpus", int, 1)
    if ns.device not in ("cpu", "cuda", "mps"):
        raise UserError(f"-device {ns.device!r}: expected cpu, cuda or mps")
    find_trainer_class(ns.tr)
    ds = dataset_name(ns.dataset)
    plans_file = preprocessed_file(ds, f"{ns.p}.json")
    try:
        confs = json.loads(plans_file.read_text()).get("configurations", {})
    except (OSError, ValueError) as e:
        raise UserError(f"{plans_file}: cannot read ({e})") from None
    if ns.configuration not in confs:
        raise UserError(f"configuration {ns.configuration!r} does not exist in {plans_file} "
                        f"(has: {', '.join(confs)})")


def check_predict_args(argv: Sequence[str], check_inputs: bool = True) -> None:
    """``nnUNetv2_predict``'s arguments that nnU-Net turns into tracebacks or writes half an output for (folds,
    numbers, -i, -o, -device, trainer, dataset, model folder), then :func:`check_prediction_inputs` on -i with the
    model's dataset.json and plans (so ``nnunet-ext predict`` is a checked path; stock ``nnUNetv2_predict`` is not).
    ``check_inputs=False``: all but the last (-i's files unread; ``nnunet-ext predict`` checks them once it knows
    their layout)."""
    if not argv or any(a in ("-h", "--help") for a in argv):
        return
    ns = _known_args(argv, {"-i": None, "-o": None, "-d": None, "-p": "nnUNetPlans", "-tr": "nnUNetTrainer",
                            "-c": None, "-f": None, "-chk": "checkpoint_final.pth", "-step_size": "0.5",
                            "-npp": "1", "-nps": "1", "-num_parts": "1", "-part_id": "0", "-device": "cuda",
                            "-prev_stage_predictions": None})
    if ns is None or None in (ns.i, ns.o, ns.d, ns.c):
        return  # nnU-Net's own argparse reports the missing required arguments
    folds = parse_folds(ns.f) if ns.f is not None else [0, 1, 2, 3, 4]
    _number(ns.step_size, "-step_size", float, 0, 1, lo_open=True)
    for flag in ("npp", "nps"):
        _number(getattr(ns, flag), f"-{flag}", int, 1)
    parts = _number(ns.num_parts, "-num_parts", int, 1)
    _number(ns.part_id, "-part_id", int, 0, parts - 1)
    if ns.device not in ("cpu", "cuda", "mps"):
        raise UserError(f"-device {ns.device!r}: expected cpu, cuda or mps")
    if not Path(ns.i).is_dir():
        raise UserError(f"-i {ns.i}: input folder does not exist")
    check_output_path(ns.o, "-o output folder")
    find_trainer_class(ns.tr)
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    ds = dataset_name(ns.d)
    if not os.environ.get("nnUNet_results"):
        raise UserError("nnUNet_results is not set: it must point at the folder with the trained models")
    folder = Path(get_output_folder(ds, ns.tr, ns.p, ns.c))
    if not folder.is_dir():
        raise UserError(f"model folder {folder} does not exist (check -d, -tr, -p, -c)")
    for f in folds:
        if not (folder / f"fold_{f}" / ns.chk).is_file():
            raise UserError(f"fold {f}: {folder / f'fold_{f}' / ns.chk} does not exist")
    jsons = {}
    for name in ("dataset.json", "plans.json"):
        try:
            jsons[name] = json.loads((folder / name).read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{folder / name}: cannot read ({e})") from None
    if ns.prev_stage_predictions is None:
        check_not_cascade(jsons["plans.json"], ns.c, f"-c {ns.c}",
                          "needs -prev_stage_predictions FOLDER (nnUNetv2_predict's cascade input)")
    for f in folds:
        check_checkpoint(folder / f"fold_{f}" / ns.chk)
    if check_inputs:
        check_prediction_inputs(ns.i, SimpleNamespace(dataset_json=jsons["dataset.json"], plans=jsons["plans.json"],
                                                      configuration=ns.c))


def _number(value, flag: str, kind=float, lo=None, hi=None, lo_open=False):
    try:
        v = kind(value)
    except (TypeError, ValueError):
        raise UserError(f"{flag} {value!r}: expected {'an integer' if kind is int else 'a number'}") from None
    if (kind is float and not math.isfinite(v)) or (lo is not None and (v <= lo if lo_open else v < lo)) \
            or (hi is not None and v > hi):
        rng = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}{']' if hi is not None else ')'}"
        raise UserError(f"{flag} {value!r}: must be in {rng}")
    return v


def _known_args(argv: Sequence[str], spec: Dict[str, Optional[str]], positionals: Sequence[str] = ()):
    p = argparse.ArgumentParser(add_help=False)
    for name in positionals:
        p.add_argument(name, nargs="?")
    for flag, default in spec.items():
        p.add_argument(flag, default=default, nargs="+" if flag == "-f" else None)
    try:
        ns, _ = p.parse_known_args(list(argv))
    except SystemExit:  # e.g. a flag without its value: nnU-Net's own argparse reports it
        return None
    return ns
