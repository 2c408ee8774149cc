"""``nnunet-ext check-inputs``: the input checks of predict-c2f and evaluate for a folder, e.g. before stock
``nnUNetv2_predict`` (which has none of them)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from nnunet_ext.checks.geometry import (check_case_files, check_evaluation_folders, check_prediction_inputs,
                                        list_case_files)
from nnunet_ext.errors import UserError, dataset_name, preprocessed_file


def _model_from_dataset(dataset, configuration: str, plans_name: str):
    ds = dataset_name(dataset)
    jsons, files = {}, {}
    for name, filename in (("plans", f"{plans_name}.json"), ("dataset.json", "dataset.json")):
        f = files[name] = preprocessed_file(ds, filename, name)
        try:
            jsons[name] = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{f}: cannot read ({e})") from None
    confs = jsons["plans"].get("configurations", {})
    if configuration not in confs:
        raise UserError(f"configuration {configuration!r} does not exist in {files['plans']} "
                        f"(has: {', '.join(confs)})")
    return SimpleNamespace(dataset_json=jsons["dataset.json"], plans=jsons["plans"], configuration=configuration)


def cmd_check_inputs(args) -> int:
    if args.reference is not None:
        if not Path(args.reference).is_dir():
            raise UserError(f"reference folder {args.reference} does not exist")
        if not Path(args.i).is_dir():
            raise UserError(f"prediction folder {args.i} does not exist")
        ending = args.file_ending or ".nii.gz"
        n = check_evaluation_folders(args.reference, [args.i], ending)
        if not n:
            raise UserError(f"{args.i}: no prediction ending in {ending} has a reference in {args.reference}")
        print(f"OK: {n} prediction(s) in {args.i} match their references in {args.reference}")
        return 0
    if args.d is not None:
        if args.channels is not None or args.file_ending is not None:
            raise UserError("-d/-c and --channels/--file-ending are exclusive")
        if not args.c:
            raise UserError("-d needs -c CONFIGURATION")
        model = _model_from_dataset(args.d, args.c, args.p)
        cases = check_prediction_inputs(args.i, model)
    else:
        if args.channels is None or args.channels < 1:
            raise UserError("give -d DATASET -c CONFIGURATION, or --channels N (>= 1) [--file-ending E] [--dim 2|3]")
        cases = list_case_files(args.i, args.file_ending or ".nii.gz", args.channels)
        for files in cases.values():
            check_case_files(files, args.dim, num_channels=args.channels)
    print(f"OK: {len(cases)} case(s), {sum(len(v) for v in cases.values())} file(s) in {args.i} read completely: "
          f"finite, channels and dimensionality as the model takes")
    return 0


def register_cli(subparsers, name: str, help: str) -> None:
    s = subparsers.add_parser(
        name, help=help,
        description="Reads every file completely and checks what predict-c2f and evaluate check before they start: "
                    "truncated/corrupt files (SimpleITK zero-fills a truncated .nii.gz silently), non-finite "
                    "voxels, exactly the model's channel files per case, 2D/3D as the model takes. With "
                    "--reference: each prediction's size, spacing, origin and direction against its reference. "
                    "Stock nnUNetv2_predict does none of this; run this before it.")
    s.add_argument("-i", required=True, help="input folder (CASE_XXXX<file_ending>), or predictions with --reference")
    s.add_argument("-d", default=None, help="dataset name or id (channels, file ending from nnUNet_preprocessed)")
    s.add_argument("-c", default=None, help="configuration of the model, e.g. 3d_fullres")
    s.add_argument("-p", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    s.add_argument("--channels", type=int, default=None, help="without -d: channel files per case")
    s.add_argument("--file-ending", default=None, help="without -d: file ending (default .nii.gz)")
    s.add_argument("--dim", type=int, choices=(2, 3), default=3, help="without -d: the model's dimensionality")
    s.add_argument("--reference", default=None, metavar="GT_FOLDER",
                   help="check -i as predictions against the reference segmentations of GT_FOLDER")
    s.set_defaults(func=cmd_check_inputs)
