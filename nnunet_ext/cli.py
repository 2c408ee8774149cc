"""``nnunet-ext``: the command line of nnunet-ext (sub-commands in nnU-Net's style).

Core sub-commands live here; a module that brings sub-commands of its own defines ``register_cli(subparsers)`` and
is listed in :data:`LAZY_COMMANDS`. That module is imported only when one of its sub-commands runs, so ``env``,
``--version`` and ``-h`` import neither torch nor nnU-Net (benchmarks/cli_startup.py measures it). Errors a user can
fix are reported on one line on stderr with a non-zero exit status (no traceback).
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from typing import List, Optional

import nnunet_ext
from nnunet_ext.errors import UserError  # re-exported: nnunet_ext.cli.UserError
from nnunet_ext.lookup import pass_through, trainer_names

#: sub-commands whose module is imported only when they run: name -> ("module[:function]", one-line help).
#: ``function`` (default ``register_cli``) adds the sub-command's parser; the help is what ``nnunet-ext -h`` shows
#: (tests/test_cli.py checks it equals the help the module registers).
LAZY_COMMANDS = {
    "make-dataset": ("nnunet_ext.cli:register_make_dataset",
                     "write the embedded synthetic pancreas CT dataset (nnU-Net raw format)"),
    "demo": ("nnunet_ext.data.demo", "the main job on the embedded synthetic dataset: ours vs stock nnU-Net, end to end"),
    "evaluate": ("nnunet_ext.evaluation.metrics",
                 "nnU-Net's evaluation (Dice, IoU) plus HD95 and NSD per class, JSON + per-case CSV"),
    "benchmark": ("nnunet_ext.benchmark.cli",
                  "model figures (params, FLOPs, step time, memory, inference) and accuracy vs stock nnU-Net"),
    "predict-c2f": ("nnunet_ext.c2f.pipeline",
                    "coarse-to-fine inference with two trained models (ResDSN C2F / two-stage U-Net)"),
    "crossval-c2f": ("nnunet_ext.c2f.crossval",
                     "score a coarse-to-fine pair in nnU-Net's cross-validation (fold k + fold k on fold k's "
                     "validation cases)"),
    "make-coarse-config": ("nnunet_ext.c2f.coarse_config",
                           "add the R-times downsampled coarse configuration (two-stage U-Net) to the plans"),
    "plan": ("nnunet_ext.planning",
             "nnU-Net planning (+ preprocessing where needed) sized to a GPU-memory target for one or more "
             "architectures"),
    "predict-slices": ("nnunet_ext.inference.slice_predictor",
                       "nnUNetv2_predict (same flags and outputs) with 2d configurations predicted several slices per "
                       "forward and without per-tile Gaussian weighting when the patch covers the slice"),
    "check-inputs": ("nnunet_ext.checks.inputs",
                     "check an input folder (truncated files, NaN/Inf, channels, 4D) before nnUNetv2_predict"),
}
#: the modules that add sub-commands (each imported only when one of its sub-commands runs)
COMMAND_MODULES = tuple(dict.fromkeys(v[0].split(":")[0] for v in LAZY_COMMANDS.values() if ":" not in v[0]))


def load_register(name: str):
    """The ``register_cli``-like function that adds sub-command ``name`` (imports its module)."""
    target = LAZY_COMMANDS[name][0]
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func or "register_cli")


# ------------------------------------------------------------------------------------------------ env / listings
def cmd_env(args) -> int:
    d = shlex.quote(nnunet_ext.EXT_TRAINER_DIR)
    # keeps any folders the user already lists
    print(f'export nnUNet_extTrainer={d}"${{nnUNet_extTrainer:+{os.pathsep}$nnUNet_extTrainer}}"')
    return 0


def cmd_trainers(args) -> int:
    for n in trainer_names(args.all):
        print(n)
    return 0


def cmd_archs(args) -> int:
    from nnunet_ext import architectures as A

    for name in A.list_architectures(args.pattern):
        if args.tsv:
            n = A.count_parameters_of(name)
            print(f"{name}\t{n}\t{A.get_spec(name).description}")
        else:
            print(name)
    return 0


def cmd_train(args) -> int:
    from nnunet_ext.checks.inputs import check_train_args

    check_train_args(args.args)
    return pass_through("nnunetv2.run.run_training", "run_training_entry", "nnUNetv2_train", args.args)


def cmd_predict(args) -> int:
    from nnunet_ext.checks.inputs import check_predict_args

    check_predict_args(args.args)
    return pass_through("nnunetv2.inference.predict_from_raw_data", "predict_entry_point", "nnUNetv2_predict",
                         args.args)


def register_make_dataset(sub) -> None:
    from nnunet_ext.data.synthetic import add_make_dataset_arguments

    s = sub.add_parser("make-dataset", help=LAZY_COMMANDS["make-dataset"][1],
                       description="Writes DatasetXXX_Name (dataset.json, imagesTr, labelsTr, imagesTs, labelsTs) "
                                   "shaped like MSD Task07 Pancreas: labels 0 background, 1 pancreas, 2 tumour.")
    add_make_dataset_arguments(s)
    s.set_defaults(func=cmd_make_dataset)


def cmd_make_dataset(args) -> int:
    from nnunet_ext.data.synthetic import DatasetExistsError, make_dataset_from_args

    try:
        folder = make_dataset_from_args(args)
    except (DatasetExistsError, OSError, ValueError) as e:
        raise UserError(str(e)) from None
    print(folder)
    return 0


# ------------------------------------------------------------------------------------------------ parser
class _OneLineParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (``PROG: error: MESSAGE (see PROG -h)``), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module (if it is one of :data:`LAZY_COMMANDS`) is imported to build its
    sub-parser, the other lazy sub-commands get a placeholder that shows their help line. ``command="*"`` builds
    every sub-parser (imports every module)."""
    p = _OneLineParser(
        prog="nnunet-ext",
        description="nnU-Net v2 plugin: DMC-Net, ResDSN C2F, DLKUNet, MoNet and the two-stage 3D U-Net as nnU-Net "
                    "trainers. Use the stock nnU-Net commands after: eval \"$(nnunet-ext env)\"")
    p.add_argument("--version", action="version", version=f"nnunet-ext {nnunet_ext.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("env", help="print the shell line that makes the stock nnUNetv2_* commands find our trainers",
                       description="Prints 'export nnUNet_extTrainer=...'. Use: eval \"$(nnunet-ext env)\"")
    s.set_defaults(func=cmd_env)

    s = sub.add_parser("trainers", help="list the trainer classes of nnunet-ext, one per line",
                       description="Lists every trainer class nnunet-ext exports (usable with -tr). Any of them "
                                   "also exists as <Trainer>_<N>epochs (and _<M>iters) for short schedules.")
    s.add_argument("--all", action="store_true", help="also list the pre-built short schedules (_1epoch ...)")
    s.set_defaults(func=cmd_trainers)

    s = sub.add_parser("archs", help="list the registered architecture variants",
                       description="Lists the registered architecture variants. With --tsv: name, trainable "
                                   "parameters at the default (paper) construction, description, tab-separated.")
    s.add_argument("--tsv", action="store_true", help="name<TAB>trainable_parameters<TAB>description")
    s.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'dmc*'")
    s.set_defaults(func=cmd_archs)

    for name, func, stock in (("train", cmd_train, "nnUNetv2_train"), ("predict", cmd_predict, "nnUNetv2_predict")):
        s = sub.add_parser(name, help=f"{stock} with our trainers registered (for when you cannot set env vars)",
                           description=f"Runs {stock} with nnUNet_extTrainer set. All arguments go to {stock}; "
                                       f"see 'nnunet-ext {name} -h'.", add_help=False)
        s.add_argument("args", nargs=argparse.REMAINDER)
        s.set_defaults(func=func)

    done = set()
    for name, (target, help_) in LAZY_COMMANDS.items():
        if command in (name, "*"):
            register = load_register(name)
            if register not in done:  # one module may add several sub-commands (their placeholders are skipped)
                done.add(register)
                register(sub)
        elif not (command in LAZY_COMMANDS and LAZY_COMMANDS[command][0] == target):
            s = sub.add_parser(name, help=help_, add_help=False)
            s.add_argument("args", nargs=argparse.REMAINDER)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in LAZY_COMMANDS else None)
    # pass-throughs take everything after the sub-command, including -h
    if argv and argv[0] in ("train", "predict"):
        args = argparse.Namespace(command=argv[0], args=argv[1:], func=cmd_train if argv[0] == "train" else cmd_predict)
    else:
        args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"nnunet-ext {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
