"""Trainers of nnunet-ext, found by the stock ``nnUNetv2_train`` / ``nnUNetv2_predict`` through ``nnUNet_extTrainer``
(``eval "$(nnunet-ext env)"``).

Every public module of this package is imported; each ``nnUNetTrainer`` subclass defined in one of them (and not
starting with ``_``) is exported here. Names such as ``nnUNetTrainerPlainUNet_5epochs`` are built on demand by the
module ``__getattr__`` below (see :mod:`._naming`); the short schedules in ``_naming.SHORT_SCHEDULES`` are pre-built.
"""
import importlib
import pkgutil
import sys

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from . import _naming
from ._naming import SHORT_SCHEDULES, register_suffix
from .base import nnUNetTrainerExt

_EXPORTED = {"nnUNetTrainerExt": nnUNetTrainerExt}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("_") or _info.name == "base":
        continue
    _mod = importlib.import_module(f"{__name__}.{_info.name}")
    for _k, _v in vars(_mod).items():
        if (isinstance(_v, type) and issubclass(_v, nnUNetTrainer) and _v.__module__ == _mod.__name__
                and not _k.startswith("_")):
            _EXPORTED[_k] = _v
globals().update(_EXPORTED)


def exported_trainers():
    """Trainer classes of nnunet-ext by name (the explicit ones, without built-by-name schedules)."""
    return {k: v for k, v in _EXPORTED.items() if k != "nnUNetTrainerExt"}


def get_trainer(name: str) -> type:
    """The trainer class for ``name`` (exported, or built by name); AttributeError if there is none."""
    return getattr(sys.modules[__name__], name)


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    parsed = _naming.parse(name, {**exported_trainers(), "nnUNetTrainer": nnUNetTrainer})
    if parsed is None:
        raise AttributeError(f"module {__name__!r} has no trainer {name!r}")
    base, matched = parsed
    try:
        cls = _naming.derive(name, base, matched, module=__name__)
    except ValueError as e:  # e.g. _0epochs: "not found" for hasattr() in nnU-Net's lookup, never a traceback
        raise AttributeError(f"module {__name__!r} has no trainer {name!r}: {e}") from None
    globals()[name] = cls
    return cls


def short_schedule_names():
    return [f"{t}_{n}epoch{'s' if n != 1 else ''}" for t in exported_trainers() for n in SHORT_SCHEDULES]


# pre-build the usual short schedules so that they are plain module attributes (dir(), star-imports, pickling)
for _n in short_schedule_names():
    __getattr__(_n)

__all__ = list(exported_trainers()) + short_schedule_names() + [
    "nnUNetTrainerExt", "exported_trainers", "get_trainer", "short_schedule_names", "register_suffix"]
