"""The post-processing rule of a comparison: ONE declared rule applied to every prediction of every row at scoring,
before any metric (:func:`nnunet_ext.evaluation.case.compute_case_metrics`); the prediction files are not changed.

* ``none`` (default): the predictions as written.
* ``largest``: the largest connected component of each foreground class (region, for region-based datasets) is
  kept, the rest set to background: nnU-Net's ``remove_all_but_largest_component_from_segmentation`` once per class.
* ``nnunet``: each row's own ``postprocessing.pkl`` (written by ``nnUNetv2_find_best_configuration`` /
  ``nnUNetv2_determine_postprocessing``), applied with nnU-Net's ``apply_postprocessing``. Where the pkl is looked up:
  :func:`results_folder_pkl` (a trained model or a results folder in nnU-Net's trainer layout, e.g. of
  ``crossval-c2f``) and :func:`prediction_folder_pkl` (a ``--pred`` folder).

Bad input (an unknown rule, a missing or unreadable pkl) is a one-line ``UserError`` naming the value or the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from nnunet_ext.errors import UserError

__all__ = ["RULES", "DEFAULT_RULE", "Postprocessing", "check_rule", "results_folder_pkl", "prediction_folder_pkl",
           "postprocessing_for"]

RULES = ("none", "largest", "nnunet")
DEFAULT_RULE = "none"
RULE_HELP = ("post-processing applied to every row's predictions before scoring (files unchanged): none (default), "
             "largest (largest component per class, nnU-Net's function), nnunet (each row's own postprocessing.pkl "
             "of nnUNetv2_find_best_configuration; docs/benchmarks.md says where it is looked up)")


def check_rule(rule: str, flag: str = "--postprocessing") -> str:
    if rule not in RULES:
        raise UserError(f"{flag} {rule!r}: unknown post-processing rule (expected one of {', '.join(RULES)})")
    return rule


def results_folder_pkl(model_folder, folds: Sequence) -> Path:
    """The pkl of a trained model (or of a results folder in nnU-Net's trainer layout) for the cross-validation of
    ``folds``: ``MODEL_FOLDER/crossval_results_folds_<f0_f1_...>/postprocessing.pkl``, where
    ``nnUNetv2_find_best_configuration -f <folds>`` writes it."""
    from nnunetv2.utilities.file_path_utilities import folds_tuple_to_string

    return Path(model_folder) / f"crossval_results_folds_{folds_tuple_to_string(list(folds))}" / "postprocessing.pkl"


def prediction_folder_pkl(folder) -> Path:
    """The pkl of a prediction folder: ``FOLDER/postprocessing.pkl`` (``nnUNetv2_determine_postprocessing -i FOLDER``
    writes it there; or copy a model's there)."""
    return Path(folder) / "postprocessing.pkl"


@dataclass(frozen=True)
class Postprocessing:
    """A checked rule: ``rule`` and, for ``nnunet``, the ``pkl`` file and its loaded (functions, kwargs). Picklable
    (sent to evaluation worker processes)."""
    rule: str = DEFAULT_RULE
    pkl: Optional[str] = None
    functions: tuple = field(default=(), compare=False)
    kwargs: tuple = field(default=(), compare=False)

    def apply(self, seg: np.ndarray, foreground: Sequence) -> np.ndarray:
        """``seg`` (a label map, any shape) after the rule; ``foreground``: the labels or regions scored."""
        if self.rule == "none":
            return seg
        if self.rule == "largest":
            from nnunetv2.postprocessing.remove_connected_components import (
                remove_all_but_largest_component_from_segmentation)

            for r in foreground:
                seg = remove_all_but_largest_component_from_segmentation(
                    seg, int(r) if np.ndim(r) == 0 else tuple(int(v) for v in r))
            return seg
        from nnunetv2.postprocessing.remove_connected_components import apply_postprocessing

        return apply_postprocessing(seg, list(self.functions), list(self.kwargs))

    def describe(self) -> str:
        return f"nnunet ({self.pkl})" if self.rule == "nnunet" else self.rule

    def record(self) -> dict:
        """What summaries write: ``{"rule": ..., "pkl": ...}``."""
        return {"rule": self.rule, "pkl": self.pkl}


def postprocessing_for(rule: str, pkl=None, what: str = "") -> Postprocessing:
    """The checked :class:`Postprocessing` of ``rule``; for ``nnunet`` the ``pkl`` file must exist and load (nnU-Net's
    ``load_pickle``) as nnU-Net writes it: (functions, kwargs) of equal length. ``what`` names the row in errors."""
    check_rule(rule)
    if rule != "nnunet":
        return Postprocessing(rule)
    who = f"{what}: " if what else ""
    if pkl is None or not os.path.isfile(pkl):
        raise UserError(f"{who}--postprocessing nnunet: {pkl} does not exist (nnUNetv2_find_best_configuration or "
                        f"nnUNetv2_determine_postprocessing writes it)")
    from batchgenerators.utilities.file_and_folder_operations import load_pickle

    try:
        fns, kwargs = load_pickle(str(pkl))
        fns, kwargs = tuple(fns), tuple(dict(k) for k in kwargs)
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file is the user's
        raise UserError(f"{who}{pkl}: not a readable nnU-Net postprocessing.pkl ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if len(fns) != len(kwargs) or not all(callable(f) for f in fns):
        raise UserError(f"{who}{pkl}: not an nnU-Net postprocessing.pkl (expected (functions, kwargs))")
    return Postprocessing("nnunet", str(pkl), fns, kwargs)
