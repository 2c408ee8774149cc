"""The core sub-commands of ``nnunet-ext``: ``env``, ``trainers``, ``archs``, the ``train`` / ``predict``
pass-throughs to stock nnU-Net and ``make-dataset``. Each ``register_*(subparsers, name, help)`` adds one (its help
line comes from :data:`nnunet_ext.commands.COMMANDS`). Imports neither torch nor nnU-Net at module level, so ``env``
stays light.
"""
from __future__ import annotations

import argparse
import os
import shlex

import nnunet_ext
from nnunet_ext.errors import UserError


# ------------------------------------------------------------------------------------------------ env / listings
def cmd_env(args) -> int:
    d = shlex.quote(nnunet_ext.EXT_TRAINER_DIR)
    # keeps any folders the user already lists
    print(f'export nnUNet_extTrainer={d}"${{nnUNet_extTrainer:+{os.pathsep}$nnUNet_extTrainer}}"')
    return 0


def cmd_trainers(args) -> int:
    from nnunet_ext.lookup import trainer_names

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


def register_env(subparsers, name: str, help: str) -> None:
    s = subparsers.add_parser(name, help=help,
                              description="Prints 'export nnUNet_extTrainer=...'. Use: eval \"$(nnunet-ext env)\"")
    s.set_defaults(func=cmd_env)


def register_trainers(subparsers, name: str, help: str) -> None:
    s = subparsers.add_parser(name, help=help,
                              description="Lists every trainer class nnunet-ext exports (usable with -tr). Any of "
                                          "them also exists as <Trainer>_<N>epochs (and _<M>iters) for short "
                                          "schedules.")
    s.add_argument("--all", action="store_true", help="also list the pre-built short schedules (_1epoch ...)")
    s.set_defaults(func=cmd_trainers)


def register_archs(subparsers, name: str, help: str) -> None:
    s = subparsers.add_parser(name, help=help,
                              description="Lists the registered architecture variants. With --tsv: name, trainable "
                                          "parameters at the default (paper) construction, description, "
                                          "tab-separated.")
    s.add_argument("--tsv", action="store_true", help="name<TAB>trainable_parameters<TAB>description")
    s.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'dmc*'")
    s.set_defaults(func=cmd_archs)


# ------------------------------------------------------------------------------------------------ pass-throughs
def cmd_train(args) -> int:
    from nnunet_ext.checks import check_train_args
    from nnunet_ext.lookup import pass_through

    check_train_args(args.args)
    return pass_through("nnunetv2.run.run_training", "run_training_entry", "nnUNetv2_train", args.args)


def cmd_predict(args) -> int:
    from nnunet_ext.inference.predict import run_predict

    return run_predict(args.args)  # any -i layout (DICOM too), --dicom_seg/--statistics/--preview/--quiet


def _register_pass_through(subparsers, name: str, help: str, stock: str, func) -> None:
    # prefix_chars="+": this parser knows no "-" flag, so every argument (-h too) lands in ``args`` for ``stock``
    s = subparsers.add_parser(name, help=help, add_help=False, prefix_chars="+",
                              description=f"Runs {stock} with nnUNet_extTrainer set. All arguments go to {stock}; "
                                          f"see 'nnunet-ext {name} -h'.")
    s.add_argument("args", nargs=argparse.REMAINDER)
    s.set_defaults(func=func)


def register_train(subparsers, name: str, help: str) -> None:
    _register_pass_through(subparsers, name, help, "nnUNetv2_train", cmd_train)


def register_predict(subparsers, name: str, help: str) -> None:
    _register_pass_through(subparsers, name, help, "nnUNetv2_predict", cmd_predict)


# ------------------------------------------------------------------------------------------------ make-dataset
def cmd_make_dataset(args) -> int:
    from nnunet_ext.data.synthetic import DatasetExistsError, make_dataset_from_args

    try:
        folder = make_dataset_from_args(args)
    except (DatasetExistsError, OSError, ValueError) as e:
        raise UserError(str(e)) from None
    print(folder)
    return 0


def register_make_dataset(subparsers, name: str, help: str) -> None:
    from nnunet_ext.data.synthetic import add_make_dataset_arguments

    s = subparsers.add_parser(name, help=help,
                              description="Writes DatasetXXX_Name (dataset.json, imagesTr, labelsTr, imagesTs, "
                                          "labelsTs) shaped like MSD Task07 Pancreas: labels 0 background, "
                                          "1 pancreas, 2 tumour.")
    add_make_dataset_arguments(s)
    s.set_defaults(func=cmd_make_dataset)
