"""Base trainer of nnunet-ext: stock ``nnUNetTrainer`` in everything (planning, resampling, augmentation, poly-LR
SGD, Dice+CE, deep supervision, 5-fold CV, inference) except the network, which comes from our registry, adapted to
the plans (stages, features per stage, anisotropic strides, kernel sizes, conv/norm/nonlin ops).

A trainer for an architecture is a line or two::

    class nnUNetTrainerDMCNet(nnUNetTrainerExt):
        arch = "dmc_net"

Hyperparameters nnU-Net sets in its ``__init__`` (``num_epochs``, ``initial_lr``, ...) are changed declaratively
with ``hparams = {...}``; name suffixes such as ``_5epochs`` build such subclasses on demand
(see :mod:`nnunet_ext.trainers._naming`).

On CUDA, training starts with a fit check (:mod:`nnunet_ext.plans.fit`): the planner's memory estimate of the
network on the given plans against the GPU's memory; over it, training stops with one line and the
``nnunet-ext plan`` command that makes plans that fit (``nnUNet_ext_skip_memory_check=1`` skips the check).
"""
from __future__ import annotations

from typing import Any, Dict

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_ext.architectures import create_from_plans
from nnunet_ext.plans.fit import check_trainer_fits, skip_requested


class HParamsMixin:
    """Sets ``hparams`` (merged along the MRO) on the trainer instance after ``nnUNetTrainer.__init__``."""

    hparams: Dict[str, Any] = {}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        for key, value in self.merged_hparams().items():
            if not hasattr(self, key):
                raise AttributeError(f"{type(self).__name__}.hparams sets {key!r}, which nnUNetTrainer does not have")
            setattr(self, key, value)

    @classmethod
    def merged_hparams(cls) -> Dict[str, Any]:
        merged: Dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            merged.update(klass.__dict__.get("hparams", {}))
        return merged


class nnUNetTrainerExt(HParamsMixin, nnUNetTrainer):
    """nnU-Net's trainer with a registered architecture (``arch``) built from the plans.

    Class attributes (set in subclasses, one line each):
      ``arch``         registry name of the network (per configuration: override :meth:`arch_for`);
      ``arch_kwargs``  extra constructor kwargs on top of the plans (e.g. a paper switch);
      ``hparams``      attributes of the trainer instance to override after ``nnUNetTrainer.__init__``
                       (``num_epochs``, ``initial_lr``, ``num_iterations_per_epoch``, ...). Merged along the MRO,
                       so a subclass adds to (and may override) what its bases set.
    """

    arch: str = "plain_unet"
    arch_kwargs: Dict[str, Any] = {}

    @classmethod
    def arch_for(cls, configuration_manager: ConfigurationManager) -> str:
        """Registry name of the network built for ``configuration_manager``: ``arch`` (a family may choose per
        configuration, e.g. per dimension)."""
        return cls.arch

    @classmethod
    def plans_arch_kwargs_for(cls, configuration_manager: ConfigurationManager) -> Dict[str, Any]:
        """The plans' ``arch_kwargs`` the network is built from: the configuration's own (a family may adapt
        them, e.g. keep fewer stages)."""
        return configuration_manager.network_arch_init_kwargs

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> torch.nn.Module:
        """The network of :meth:`arch_for` built by the registry from :meth:`plans_arch_kwargs_for` and
        ``arch_kwargs`` (the one definition for every trainer of nnunet-ext)."""
        return create_from_plans(cls.arch_for(configuration_manager), cls.plans_arch_kwargs_for(configuration_manager),
                                 num_input_channels, num_output_channels, enable_deep_supervision, **cls.arch_kwargs)

    def on_train_start(self):
        # before nnU-Net's on_train_start builds the network on the GPU
        if self.device.type == "cuda" and not skip_requested():
            check_trainer_fits(self, warn=self.print_to_log_file)
        super().on_train_start()
