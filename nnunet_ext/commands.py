"""The sub-commands of ``nnunet-ext``: for each, the function that adds its parser and its one-line help (the only
place a sub-command's help line is written).

A target ``"module:function"`` names ``function(subparsers, name, help)``, which adds sub-command ``name`` with help
line ``help`` to ``subparsers`` (its description, arguments and ``func`` are the module's own). The module is
imported only when its sub-command runs (:func:`load_register`), so this table imports nothing.
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, NamedTuple


class Command(NamedTuple):
    target: str  # "module:function", function(subparsers, name, help) adds the sub-parser
    help: str    # the line ``nnunet-ext -h`` shows


#: name -> Command, in the order ``nnunet-ext -h`` lists them
COMMANDS: Dict[str, Command] = {
    "env": Command("nnunet_ext.core_commands:register_env",
                   "print the shell line that makes the stock nnUNetv2_* commands find our trainers"),
    "trainers": Command("nnunet_ext.core_commands:register_trainers",
                        "list the trainer classes of nnunet-ext, one per line"),
    "archs": Command("nnunet_ext.core_commands:register_archs", "list the registered architecture variants"),
    "train": Command("nnunet_ext.core_commands:register_train",
                     "nnUNetv2_train with our trainers registered (for when you cannot set env vars)"),
    "predict": Command("nnunet_ext.core_commands:register_predict",
                       "nnUNetv2_predict with our trainers registered (for when you cannot set env vars)"),
    "make-dataset": Command("nnunet_ext.core_commands:register_make_dataset",
                            "write the embedded synthetic pancreas CT dataset (nnU-Net raw format)"),
    "demo": Command("nnunet_ext.data.demo:register_cli",
                    "the main job on the embedded synthetic dataset: ours vs stock nnU-Net, end to end"),
    "evaluate": Command("nnunet_ext.evaluation.cli:register_cli",
                        "nnU-Net's evaluation (Dice, IoU) plus HD95 and NSD per class, JSON + per-case CSV"),
    "benchmark": Command("nnunet_ext.benchmark.cli:register_cli",
                         "model figures (params, FLOPs, step time, memory, inference) and accuracy vs stock nnU-Net"),
    "predict-c2f": Command("nnunet_ext.c2f.cli:register_cli",
                           "coarse-to-fine inference with two trained models (ResDSN C2F / two-stage U-Net)"),
    "crossval-c2f": Command("nnunet_ext.c2f.crossval:register_cli",
                            "score a coarse-to-fine pair in nnU-Net's cross-validation (fold k + fold k on fold k's "
                            "validation cases)"),
    "make-coarse-config": Command("nnunet_ext.c2f.coarse_config:register_cli",
                                  "add the R-times downsampled coarse configuration (two-stage U-Net) to the plans"),
    "plan": Command("nnunet_ext.planning:register_cli",
                    "nnU-Net planning (+ preprocessing where needed) sized to a GPU-memory target for one or more "
                    "architectures"),
    "predict-slices": Command("nnunet_ext.inference.slice_predictor:register_cli",
                              "nnUNetv2_predict (same flags and outputs) with 2d configurations predicted several "
                              "slices per forward and without per-tile Gaussian weighting when the patch covers the "
                              "slice"),
    "grid": Command("nnunet_ext.grid.cli:register_cli",
                    "trainers x configurations x folds (+ C2F pairs) as SLURM or local jobs, resumable, then the "
                    "benchmark report"),
    "check-inputs": Command("nnunet_ext.checks.cli:register_cli",
                            "check an input folder (truncated files, NaN/Inf, channels, 4D) before nnUNetv2_predict"),
}


def load_register(name: str) -> Callable:
    """The function that adds sub-command ``name`` (imports its module)."""
    module, _, func = COMMANDS[name].target.partition(":")
    return getattr(importlib.import_module(module), func)
