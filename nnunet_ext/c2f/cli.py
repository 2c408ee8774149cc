"""``nnunet-ext predict-c2f``: the sub-command of :func:`nnunet_ext.c2f.pipeline.predict_c2f`, and the options it
shares with ``crossval-c2f`` (:func:`add_pair_arguments`)."""
from __future__ import annotations

import argparse

from nnunet_ext.c2f.modes import DEFAULT_FINE_MARGIN_MM, DEFAULT_MODE, MODES, TWO_STAGE_MARGINS_VOX, mode_help
from nnunet_ext.c2f.pipeline import FALLBACKS, predict_c2f
from nnunet_ext.checks import check_output_path
from nnunet_ext.dicom.outputs import add_extra_arguments


def cmd_predict_c2f(args) -> int:
    """``predict-c2f``: the output path, folds, options and both models checked first, then the whole ``-i``
    folder (any layout of :mod:`nnunet_ext.dicom.inputs`, staged into nnU-Net's), then
    :func:`~nnunet_ext.c2f.pipeline.predict_c2f` under a progress bar, then the extras (``--dicom_seg``,
    ``--statistics``, ``--preview``: :mod:`nnunet_ext.dicom.outputs`)."""
    from nnunet_ext.c2f.pipeline import check_pair
    from nnunet_ext.dicom.inputs import image_cases, scan_inputs, stage
    from nnunet_ext.dicom.outputs import check_extras, from_args, write_extras
    from nnunet_ext.dicom.progress import CaseProgress

    check_output_path(args.o, "output folder")  # nnunet_ext.checks: the one rule for output paths
    extras = from_args(args)
    # the models before -i (minutes to read and convert): options, folder, folds, checkpoints, no cascade stage
    coarse, fine = check_pair(args.o, args.d, args.coarse, args.fine, args.f, args.margin_mm, args.coarse_step,
                              args.step_size, args.min_component_fraction, args.mode, args.fallback,
                              tuple(args.two_stage_margins), args.chk, args.coarse_dataset)
    dj = fine.dataset_json
    ending = dj["file_ending"]
    inputs = scan_inputs(args.i, ending, len(dj.get("channel_names", dj.get("modality", {}))))
    check_extras(extras, inputs)
    inputs = stage(inputs, args.o, ending, fine.plans.get("image_reader_writer", "SimpleITKIO"))
    try:
        with CaseProgress(args.o, list(image_cases(inputs, ending)), ending, extras.quiet) as progress:
            predict_c2f(inputs.folder, args.o, args.d, args.coarse, args.fine, folds=args.f,
                        margin_mm=args.margin_mm, coarse_step=args.coarse_step, fine_step=args.step_size,
                        min_component_fraction=args.min_component_fraction, mode=args.mode, device=args.device,
                        checkpoint=args.chk, coarse_dataset=args.coarse_dataset, disable_mirroring=args.disable_tta,
                        ts_margins=tuple(args.two_stage_margins), fallback=args.fallback,
                        continue_prediction=args.continue_prediction, models=(coarse, fine))
        written = write_extras(inputs, args.o, ending, dj, extras)
    finally:
        inputs.cleanup()
    progress.summary(f" ({len(written)} extra file(s))" if written else "")
    return 0


def add_pair_arguments(s) -> None:
    """Options shared by ``predict-c2f`` and ``crossval-c2f``, spelled as ``nnUNetv2_predict`` spells them where it
    has them (``-f``, ``-step_size``, ``-chk``, ``-device``, ``--disable_tta``); the older spellings still work
    (hidden aliases)."""
    s.add_argument("-d", required=True, help="dataset name or id")
    s.add_argument("--coarse", required=True, metavar="TRAINER:CONFIG[:PLANS]", help="the coarse model")
    s.add_argument("--fine", required=True, metavar="TRAINER:CONFIG[:PLANS]", help="the fine model")
    s.add_argument("--mode", choices=tuple(MODES), default=DEFAULT_MODE, help=mode_help())
    s.add_argument("--fallback", choices=FALLBACKS, default="coarse",
                   help="when the coarse model finds no foreground: coarse = keep its result (background; "
                        "default), fine = run the fine model on the whole volume (a box-trained fine model "
                        "predicts false positives there)")
    s.add_argument("--margin-mm", type=float, default=None,
                   help="margin around the coarse box in mm (box 2 in two-stage mode), converted on the fine model's "
                        "grid as its training crops are. Default: the fine trainer's own training margin (_fine: "
                        f"{DEFAULT_FINE_MARGIN_MM:g} mm, _fine<M>mm: M mm, _fine<K>vox: K voxels; "
                        f"{DEFAULT_FINE_MARGIN_MM:g} mm for a model not trained on boxes)")
    s.add_argument("--coarse-step", type=float, default=0.9,
                   help="tile step of the coarse model, fraction of the patch (little overlap). Default 0.9")
    s.add_argument("-step_size", type=float, default=0.5,
                   help="tile step of the fine model (large overlap; nnUNetv2_predict's -step_size). Default 0.5")
    s.add_argument("--fine-step", dest="step_size", type=float, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    s.add_argument("--min-component-fraction", type=float, default=0.2,
                   help="the coarse box covers the largest coarse component and every other one of at least this "
                        "fraction of the coarse foreground (0: all). Only chooses the box; the output is not "
                        "filtered. Default 0.2")
    s.add_argument("--two-stage-coarse-margin", dest="two_stage_margins", type=int, nargs=1,
                   default=list(TWO_STAGE_MARGINS_VOX), metavar="COARSE_VOX",
                   help=f"two-stage box 1: margin in voxels of the coarse grid. Default {TWO_STAGE_MARGINS_VOX[0]} "
                        "(box 2 takes --margin-mm)")
    s.add_argument("--two-stage-margins", dest="two_stage_margins", type=int, nargs=2, default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)  # the old spelling: refused with one line naming the new one
    s.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint file name. Default checkpoint_final.pth")
    s.add_argument("--chk", dest="chk", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    s.add_argument("-device", choices=("auto", "cpu", "cuda"), default="auto", help="Default: cuda if available")
    s.add_argument("--device", dest="device", choices=("auto", "cpu", "cuda"), default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    s.add_argument("--disable_tta", action="store_true", help="no mirroring test-time augmentation")
    s.add_argument("--disable-tta", dest="disable_tta", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    s.add_argument("--continue_prediction", "--c", action="store_true",
                   help="skip cases whose prediction exists already (as nnUNetv2_predict)")


def register_cli(subparsers, name: str, help: str) -> None:
    """Adds the ``predict-c2f`` sub-command (``name``, help line ``help``: nnunet_ext.commands)."""
    s = subparsers.add_parser(
        name, help=help,
        description="Coarse model over the whole volume (large tile step), fine model over the box of its "
                    "foreground + margin (small tile step), pasted back, small components removed, written with "
                    "the input's geometry. Per-case times go to c2f_times.json beside the predictions. Each case "
                    "is written atomically; a failing case stops the run and keeps the finished ones. "
                    "--save_probabilities is not supported (see docs/c2f.md).")
    s.add_argument("-i", required=True, help="input folder: nnU-Net's raw naming (CASE_XXXX.nii.gz), any-named "
                                             "images (.nii, .nii.gz, .nrrd, .mha) or DICOM series (docs/dicom.md)")
    s.add_argument("-o", required=True, help="output folder")
    s.add_argument("-f", nargs="+", default=None, metavar="FOLD",
                   help="folds of both models (default: every fold with a checkpoint)")
    add_pair_arguments(s)
    s.add_argument("--coarse-dataset", default=None,
                   help="look the coarse model up in this dataset's results instead of -d's (e.g. a copy of the "
                        "dataset under another id); its plans must name the same dataset, labels and channels as "
                        "the fine model's, or predict-c2f refuses")
    add_extra_arguments(s)  # --dicom_seg, --statistics, --preview, --quiet (nnunet_ext.dicom.outputs)
    s.set_defaults(func=cmd_predict_c2f)

