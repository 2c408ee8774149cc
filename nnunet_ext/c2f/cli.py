"""``nnunet-ext predict-c2f``: the sub-command of :func:`nnunet_ext.c2f.pipeline.predict_c2f`, and the options it
shares with ``crossval-c2f`` (:func:`add_pair_arguments`)."""
from __future__ import annotations

import argparse

from nnunet_ext.c2f.modes import DEFAULT_FINE_MARGIN_MM, DEFAULT_MODE, MODES, TWO_STAGE_MARGINS_VOX, mode_help
from nnunet_ext.c2f.pipeline import FALLBACKS, predict_c2f
from nnunet_ext.checks import check_output_path


def cmd_predict_c2f(args) -> int:
    """``predict-c2f``: the output path checked first, then :func:`~nnunet_ext.c2f.pipeline.predict_c2f`."""
    check_output_path(args.o, "output folder")  # nnunet_ext.checks: the one rule for output paths
    predict_c2f(args.i, args.o, args.d, args.coarse, args.fine, folds=args.f, margin_mm=args.margin_mm,
                coarse_step=args.coarse_step, fine_step=args.step_size,
                min_component_fraction=args.min_component_fraction, mode=args.mode, device=args.device,
                checkpoint=args.chk, coarse_dataset=args.coarse_dataset, disable_mirroring=args.disable_tta,
                ts_margins=tuple(args.two_stage_margins), fallback=args.fallback,
                continue_prediction=args.continue_prediction)
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
    s.add_argument("--margin-mm", type=float, default=DEFAULT_FINE_MARGIN_MM,
                   help=f"margin around the coarse box in mm (c2f mode). Default {DEFAULT_FINE_MARGIN_MM:g}")
    s.add_argument("--coarse-step", type=float, default=0.9,
                   help="tile step of the coarse model, fraction of the patch (little overlap). Default 0.9")
    s.add_argument("-step_size", type=float, default=0.5,
                   help="tile step of the fine model (large overlap; nnUNetv2_predict's -step_size). Default 0.5")
    s.add_argument("--fine-step", dest="step_size", type=float, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    s.add_argument("--min-component-fraction", type=float, default=0.2,
                   help="remove components smaller than this fraction of the total foreground (0: keep all). "
                        "Default 0.2")
    s.add_argument("--two-stage-margins", type=int, nargs=2, default=list(TWO_STAGE_MARGINS_VOX),
                   metavar=("COARSE_VOX", "FINE_VOX"),
                   help=f"two-stage box margins. Default {TWO_STAGE_MARGINS_VOX[0]} {TWO_STAGE_MARGINS_VOX[1]}")
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
    s.add_argument("-i", required=True, help="input folder (CASE_XXXX.nii.gz, nnU-Net's raw naming)")
    s.add_argument("-o", required=True, help="output folder")
    s.add_argument("-f", nargs="+", default=None, metavar="FOLD",
                   help="folds of both models (default: every fold with a checkpoint)")
    add_pair_arguments(s)
    s.add_argument("--coarse-dataset", default=None,
                   help="look the coarse model up in this dataset's results instead of -d's (e.g. a copy of the "
                        "dataset under another id); its plans must name the same dataset, labels and channels as "
                        "the fine model's, or predict-c2f refuses")
    s.set_defaults(func=cmd_predict_c2f)

