"""How nnU-Net finds and calls the trainers of nnunet-ext: the ``nnUNet_extTrainer`` value, the trainer names,
nnU-Net's own class lookup with the one "unknown trainer" message, the network a trainer class builds, and running a
stock nnU-Net entry point with our trainers registered. Imports neither torch nor nnU-Net at module level
(``nnunet-ext env`` stays light)."""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import warnings
from typing import List, Optional

import nnunet_ext
from nnunet_ext.errors import UserError

STOCK_TRAINER = "nnUNetTrainer"
#: how nnU-Net's ``recursive_find_trainer_class_by_name`` starts its RuntimeError for a name it does not find
NNUNET_NOT_FOUND = "Could not find requested nnunet trainer "
#: the short-schedule names every trainer of nnunet-ext also has
SCHEDULE_NAMES = "<Trainer>_<N>epochs[_<M>iters], N, M >= 1"


def ext_trainer_path_value(current: Optional[str] = None) -> str:
    """``nnUNet_extTrainer`` with our shim folder first (other folders the user set are kept)."""
    parts = [p for p in (current or "").split(os.pathsep) if p and p != nnunet_ext.EXT_TRAINER_DIR]
    return os.pathsep.join([nnunet_ext.EXT_TRAINER_DIR, *parts])


def register_ext_trainers() -> None:
    """Make the stock nnU-Net entry points of this process find our trainers."""
    os.environ["nnUNet_extTrainer"] = ext_trainer_path_value(os.environ.get("nnUNet_extTrainer"))


def trainer_names(with_schedules: bool = False) -> List[str]:
    """The trainer classes nnunet-ext exports (with the pre-built short schedules if ``with_schedules``)."""
    from nnunet_ext import trainers

    names = list(trainers.exported_trainers())
    return names + (trainers.short_schedule_names() if with_schedules else [])


def default_trainers() -> List[str]:
    """Every trainer of nnunet-ext and stock nnU-Net's (the rows of ``nnunet-ext benchmark`` by default)."""
    return trainer_names() + [STOCK_TRAINER]


def unknown_trainer_message(name: str, ours_only: bool = False) -> str:
    """The one message for a trainer name that is not found: by nnU-Net's lookup with ours registered, or, with
    ``ours_only``, among the classes nnunet-ext exports."""
    ours = ", ".join(trainer_names())
    if ours_only:
        return f"unknown trainer {name!r} not found among nnunet-ext's. Trainers of nnunet-ext: {ours}"
    return (f"unknown trainer {name!r} not found (nnU-Net's or nnunet-ext's). Trainers of nnunet-ext: {ours} "
            f"(and {SCHEDULE_NAMES})")


def missing_trainer(error: BaseException) -> Optional[str]:
    """The trainer name of nnU-Net's own "Could not find requested nnunet trainer NAME ..." RuntimeError, else None."""
    text = str(error)
    if isinstance(error, RuntimeError) and NNUNET_NOT_FOUND in text:
        return text.split(NNUNET_NOT_FOUND, 1)[1].split()[0]
    return None


@contextlib.contextmanager
def quiet():
    """Silence nnU-Net's prints (trainer search, 'Using device', citation banner)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def find_trainer_class(name: str) -> type:
    """The class nnU-Net's own lookup finds for ``name`` (our ``nnUNet_extTrainer`` registered; its search prints
    and its imports' warnings silenced); UserError with :func:`unknown_trainer_message` if none."""
    register_ext_trainers()
    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

        try:
            return recursive_find_trainer_class_by_name(name)
        except (RuntimeError, AssertionError):
            raise UserError(unknown_trainer_message(name)) from None


def build_network(cls: type, plans_manager, configuration_manager, num_input_channels: int,
                  num_output_channels: int, deep_supervision: bool):
    """``cls.build_network_architecture`` with the signature nnU-Net's ``initialize`` uses (nnU-Net >= 2.7)."""
    return cls.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                          num_output_channels, deep_supervision)


def pass_through(entry_module: str, entry_func: str, prog: str, argv: List[str]) -> int:
    """Run nnU-Net's console entry point ``entry_module.entry_func`` as ``prog argv...`` with our trainers
    registered; nnU-Net's "trainer not found" becomes :func:`unknown_trainer_message`."""
    register_ext_trainers()
    module = importlib.import_module(entry_module)
    old_argv = sys.argv
    sys.argv = [prog, *argv]
    try:
        getattr(module, entry_func)()
    except RuntimeError as e:
        name = missing_trainer(e)
        if name is not None:
            raise UserError(unknown_trainer_message(name)) from None
        raise
    finally:
        sys.argv = old_argv
    return 0
