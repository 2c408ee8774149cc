"""``nnunet-ext predict``: ``nnUNetv2_predict`` (its flags, preprocessing and export) with our trainers registered,
any input layout of :mod:`nnunet_ext.dicom.inputs` (nnU-Net's, any-named images, DICOM series), the extras of
:mod:`nnunet_ext.dicom.outputs` and a progress bar over the cases.

Order: our flags stripped; nnU-Net's arguments and the model checked (:func:`nnunet_ext.checks.check_predict_args`:
folds, checkpoints, cascade configuration, ...) and its ``dataset.json`` read (file ending, channels, labels); the
whole ``-i`` folder checked; nothing is written before that. Then, for another layout than nnU-Net's, the staging
folder is written (its files checked as nnU-Net's) and ``-i`` points nnU-Net at it; nnU-Net predicts; the extras are
written; the staging folder is removed (also on failure).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import List, Optional, Sequence

from nnunet_ext.checks import check_predict_args, check_prediction_inputs
from nnunet_ext.dicom.inputs import image_cases, scan_inputs, stage
from nnunet_ext.dicom.outputs import FLAGS, check_extras, split_extra_flags, write_extras
from nnunet_ext.dicom.progress import CaseProgress
from nnunet_ext.errors import UserError, dataset_name
from nnunet_ext.lookup import pass_through

ENTRY = ("nnunetv2.inference.predict_from_raw_data", "predict_entry_point", "nnUNetv2_predict")


def _flags(argv: Sequence[str]) -> Optional[argparse.Namespace]:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag, default in (("-i", None), ("-o", None), ("-d", None), ("-c", None), ("-p", "nnUNetPlans"),
                          ("-tr", "nnUNetTrainer")):
        p.add_argument(flag, default=default)
    # nnUNetv2_predict's other flags with a value: declared so that e.g. -device is not read as -d evice
    for flag in ("-chk", "-step_size", "-device", "-npp", "-nps", "-prev_stage_predictions", "-num_parts",
                 "-part_id"):
        p.add_argument(flag)
    p.add_argument("-f", nargs="+")
    try:
        ns, _ = p.parse_known_args(list(argv))
    except SystemExit:
        return None
    return ns if None not in (ns.i, ns.o, ns.d, ns.c) else None


def _model_jsons(ns, argv: Sequence[str]):
    """The model folder's dataset.json and plans.json; where they cannot be read, nnU-Net's arguments are checked,
    whose UserError names the cause (dataset, trainer, plans, configuration)."""
    import os

    try:
        from nnunetv2.utilities.file_path_utilities import get_output_folder

        folder = Path(get_output_folder(dataset_name(ns.d), ns.tr, ns.p, ns.c))
        return json.loads((folder / "dataset.json").read_text()), json.loads((folder / "plans.json").read_text())
    except (UserError, OSError, ValueError, RuntimeError, TypeError):
        check_predict_args(argv, check_inputs=False)  # raises the specific one-line error
        raise UserError(f"cannot read the model's dataset.json and plans.json (-d {ns.d} -tr {ns.tr} -p {ns.p} "
                        f"-c {ns.c}; nnUNet_results={os.environ.get('nnUNet_results')})") from None


def _with_input(argv: Sequence[str], folder: Path) -> List[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            out.append(str(folder))
            skip = False
        elif a == "-i":
            out.append(a)
            skip = True
        elif a.startswith("-i="):
            out.append(f"-i={folder}")
        else:
            out.append(a)
    return out


def run_predict(argv: Sequence[str]) -> int:
    """The whole ``nnunet-ext predict`` (see the module); returns 0 or raises UserError."""
    rest, extras = split_extra_flags(argv)
    ns = _flags(rest)
    if any(a in ("-h", "--help") for a in rest):
        print("nnunet-ext predict: nnUNetv2_predict's flags (below); -i may also be a folder of any-named images "
              "(.nii, .nii.gz, .nrrd, .mha; one-channel models) or of DICOM series (docs/dicom.md). Our flags:\n"
              + "\n".join(f"  {flag:<14} {help}" for flag, help in FLAGS.items()) + "\n", flush=True)
    if ns is None or any(a in ("-h", "--help") for a in rest):
        check_predict_args(rest)
        return pass_through(*ENTRY, rest)
    check_predict_args(rest, check_inputs=False)  # the model first: -i may take minutes to read and convert
    dj, plans = _model_jsons(ns, rest)
    model = SimpleNamespace(dataset_json=dj, plans=plans, configuration=ns.c)
    ending = dj["file_ending"]
    inputs = scan_inputs(ns.i, ending, len(dj.get("channel_names", dj.get("modality", {}))))
    check_extras(extras, inputs)
    if inputs.layout == "nnunet":
        check_prediction_inputs(inputs.folder, model)
    inputs = stage(inputs, ns.o, ending, plans.get("image_reader_writer", "SimpleITKIO"))
    try:
        argv2 = _with_input(rest, inputs.folder)
        if inputs.staging is not None:
            check_prediction_inputs(inputs.folder, model)
        with CaseProgress(ns.o, list(image_cases(inputs, ending)), ending, extras.quiet) as progress:
            pass_through(*ENTRY, argv2)
        written = write_extras(inputs, ns.o, ending, dj, extras)
    finally:
        inputs.cleanup()
    progress.summary(f" ({len(written)} extra file(s))" if written else "")
    return 0
