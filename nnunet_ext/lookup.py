"""How nnU-Net finds the trainers of nnunet-ext: the ``nnUNet_extTrainer`` value, the trainer names, nnU-Net's own
class lookup with the one "unknown trainer" message, and running a stock nnU-Net entry point with our trainers
registered. Imports neither torch nor nnU-Net at module level (``nnunet-ext env`` stays light)."""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from typing import List, Optional

import nnunet_ext
from nnunet_ext.errors import UserError

STOCK_TRAINER = "nnUNetTrainer"


def ext_trainer_path_value(current: Optional[str] = None) -> str:
    """``nnUNet_extTrainer`` with our shim folder first (other folders the user set are kept)."""
    parts = [p for p in (current or "").split(os.pathsep) if p and p != nnunet_ext.EXT_TRAINER_DIR]
    return os.pathsep.join([nnunet_ext.EXT_TRAINER_DIR, *parts])


def register_ext_trainers() -> None:
    """Make the stock nnU-Net entry points of this process find our trainers."""
    os.environ["nnUNet_extTrainer"] = ext_trainer_path_value(os.environ.get("nnUNet_extTrainer"))


def trainer_names(with_schedules: bool = False) -> List[str]:
    from nnunet_ext import trainers

    names = list(trainers.exported_trainers())
    return names + (trainers.short_schedule_names() if with_schedules else [])


@contextlib.contextmanager
def quiet():
    """Silence nnU-Net's prints (trainer search, 'Using device', citation banner)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def find_trainer_class(name: str) -> type:
    """The class nnU-Net's own lookup finds for ``name`` (our ``nnUNet_extTrainer`` registered); UserError if none."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    register_ext_trainers()
    try:
        with quiet():
            return recursive_find_trainer_class_by_name(name)
    except (RuntimeError, AssertionError):
        raise UserError(f"unknown trainer {name!r}; trainers of nnunet-ext: {', '.join(trainer_names())} "
                        f"(and stock nnU-Net's, e.g. {STOCK_TRAINER})") from None


def pass_through(entry_module: str, entry_func: str, prog: str, argv: List[str]) -> int:
    register_ext_trainers()
    module = importlib.import_module(entry_module)
    old_argv = sys.argv
    sys.argv = [prog, *argv]
    try:
        getattr(module, entry_func)()
    except RuntimeError as e:
        if "Could not find requested nnunet trainer" in str(e):
            raise UserError(f"{str(e).splitlines()[0].split(' in nnunetv2')[0]}. Trainers of nnunet-ext: "
                            f"{', '.join(trainer_names())} (and <Trainer>_<N>epochs)") from None
        raise
    finally:
        sys.argv = old_argv
    return 0
