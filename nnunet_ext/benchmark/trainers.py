"""Trainer lookup for ``nnunet-ext benchmark``: the classes nnU-Net's own search finds (with our
``nnUNet_extTrainer`` registered) and the network each one builds."""
from __future__ import annotations

from typing import List

from nnunet_ext.lookup import STOCK_TRAINER, find_trainer_class, quiet  # noqa: F401


def default_trainers() -> List[str]:
    from nnunet_ext import trainers

    return list(trainers.exported_trainers()) + [STOCK_TRAINER]


def build_network(cls: type, plans_manager, configuration_manager, num_input_channels: int,
                  num_output_channels: int, deep_supervision: bool):
    """``cls.build_network_architecture`` with the signature nnU-Net's ``initialize`` uses (nnU-Net >= 2.7)."""
    return cls.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                          num_output_channels, deep_supervision)
