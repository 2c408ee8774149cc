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

import copy
from typing import Any, Dict, Optional

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_ext.architectures import create_from_plans
from nnunet_ext.plans.fit import check_trainer_fits, refuse, skip_requested

#: arch_kwargs entries with one value per stage (and the decoder's, with one per stage but the bottleneck)
_PER_STAGE = ("features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage")


def trim_arch_kwargs(arch_kwargs: Dict[str, Any], max_stages: Optional[int]) -> Dict[str, Any]:
    """A copy of nnU-Net plans' ``arch_kwargs`` keeping the first ``max_stages`` stages (no-op if None or fewer)."""
    out = copy.deepcopy(dict(arch_kwargs))
    n = int(out["n_stages"])
    if max_stages is None or n <= max_stages:
        return out
    if max_stages < 2:
        raise ValueError(f"max_stages={max_stages}: a U-Net needs at least 2 stages")
    out["n_stages"] = max_stages
    for k in _PER_STAGE:
        if isinstance(out.get(k), (list, tuple)):
            out[k] = list(out[k])[:max_stages]
    if isinstance(out.get("n_conv_per_stage_decoder"), (list, tuple)):
        out["n_conv_per_stage_decoder"] = list(out["n_conv_per_stage_decoder"])[:max_stages - 1]
    return out


def trim_plans(plans: dict, configuration: str, max_stages: Optional[int]) -> dict:
    """A copy of a plans dict whose ``configuration`` (and the configuration it inherits from, if any, as nnU-Net
    resolves ``inherits_from``) has its architecture trimmed to ``max_stages`` stages."""
    out = copy.deepcopy(plans)
    name = configuration
    while name is not None:
        conf = out["configurations"][name]
        arch = conf.get("architecture")
        if arch is not None and "arch_kwargs" in arch:
            arch["arch_kwargs"] = trim_arch_kwargs(arch["arch_kwargs"], max_stages)
        name = conf.get("inherits_from")
    return out


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
    #: keep the plans' first ``max_stages`` stages (None: all); applied to the plans the trainer is given (so
    #: nnU-Net's deep-supervision scales, the saved plans.json and inference agree) and, idempotently, when the
    #: network is built
    max_stages: Optional[int] = None
    #: refuse plans with fewer stages (one line, exit status 2, before nnU-Net's trainer writes anything)
    min_stages: Optional[int] = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        if self.min_stages is not None and configuration in plans.get("configurations", {}):
            n = PlansManager(plans).get_configuration(configuration).network_arch_init_kwargs.get("n_stages")
            if n is not None and int(n) < self.min_stages:
                refuse(self.too_few_stages_message(configuration, int(n)))
        super().__init__(trim_plans(plans, configuration, self.max_stages), configuration, fold, dataset_json, device)

    @classmethod
    def too_few_stages_message(cls, configuration: str, n: int) -> str:
        return (f"{cls.__name__}: the network needs {cls.min_stages} stages, the plans' {configuration} "
                f"configuration has {n}")

    @classmethod
    def arch_for(cls, configuration_manager: ConfigurationManager) -> str:
        """Registry name of the network built for ``configuration_manager``: ``arch`` (a family may choose per
        configuration, e.g. per dimension)."""
        return cls.arch

    @classmethod
    def plans_arch_kwargs_for(cls, configuration_manager: ConfigurationManager) -> Dict[str, Any]:
        """The plans' ``arch_kwargs`` the network is built from: the configuration's own, its first
        ``max_stages`` stages."""
        return trim_arch_kwargs(configuration_manager.network_arch_init_kwargs, cls.max_stages)

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
