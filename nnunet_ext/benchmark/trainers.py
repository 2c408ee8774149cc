"""Trainer lookup for ``nnunet-ext benchmark``: the classes nnU-Net's own search finds (with our
``nnUNet_extTrainer`` registered) and the network each one builds."""
from __future__ import annotations

import contextlib
import io
from typing import List

from nnunet_ext.errors import UserError

STOCK_TRAINER = "nnUNetTrainer"


@contextlib.contextmanager
def quiet():
    """Silence nnU-Net's prints (trainer search, 'Using device', citation banner)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def default_trainers() -> List[str]:
    from nnunet_ext import trainers

    return list(trainers.exported_trainers()) + [STOCK_TRAINER]


def find_trainer_class(name: str) -> type:
    """The class nnU-Net's own lookup finds for ``name`` (our ``nnUNet_extTrainer`` registered); UserError if none."""
    from nnunet_ext.cli import register_ext_trainers, trainer_names
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    register_ext_trainers()
    try:
        with quiet():
            return recursive_find_trainer_class_by_name(name)
    except (RuntimeError, AssertionError):
        raise UserError(f"unknown trainer {name!r}; trainers of nnunet-ext: {', '.join(trainer_names())} "
                        f"(and stock nnU-Net's, e.g. {STOCK_TRAINER})") from None


def build_network(cls: type, plans_manager, configuration_manager, num_input_channels: int,
                  num_output_channels: int, deep_supervision: bool):
    """``cls.build_network_architecture`` with the signature nnU-Net's ``initialize`` uses (nnU-Net >= 2.7)."""
    return cls.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                          num_output_channels, deep_supervision)
