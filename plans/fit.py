"""Does a trainer's network fit the GPU it is about to train on? (The check our trainers run when training starts.)

The estimate is the planner's memory model (:func:`nnunet_ext.plans.planner.training_memory`, ``gpu_gb``) of the
network the trainer builds, on the plans it was given (patch, batch, topology): the same figure that
``nnunet-ext plan`` sizes plans with, so plans made for a target at or below the GPU's memory pass by construction.

* estimate above the device's memory (``torch.cuda.get_device_properties(device).total_memory``, GB of 1e9
  bytes): training stops before anything is allocated, with one line that names the estimate, the device's
  memory and the commands that make plans for it (``nnunet-ext plan -d D --arch A --gpu-memory-target G``, then
  ``nnUNetv2_train ... -p nnUNetPlans_A``); exit status 2;
* estimate above the plans' own target (``nnunet_ext.gpu_memory_target_in_gb`` of plans written by
  ``nnunet-ext plan``; nnU-Net's default 8 GB for stock plans) but within the device: one warning line;
* ``nnUNet_ext_skip_memory_check=1`` in the environment skips the check.
"""
from __future__ import annotations

import math
import os
import re
import sys
from typing import Optional

import torch

from .planner import NNUNET_REFERENCE_GB, plans_name_for, training_memory

__all__ = ["SKIP_ENV", "PlansRefused", "GPUMemoryError", "refuse", "estimate_trainer_memory", "check_trainer_fits", "skip_requested"]

#: environment variable that skips the check (any of 1, true, yes)
SKIP_ENV = "nnUNet_ext_skip_memory_check"


class PlansRefused(SystemExit):
    """A trainer refuses its plans before nnU-Net's trainer starts (nothing written): exit status 2; ``str()`` is
    the one-line message, which :func:`refuse` also prints on stderr."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


class GPUMemoryError(PlansRefused):
    """Training would overflow the GPU."""


def refuse(message: str, error: type = PlansRefused):
    """Print ``message`` (one line) on stderr and raise ``error(message)``."""
    print(message, file=sys.stderr, flush=True)
    raise error(message)


def skip_requested() -> bool:
    return os.environ.get(SKIP_ENV, "").strip().lower() in ("1", "true", "yes")


def estimate_trainer_memory(trainer) -> dict:
    """The planner's model (:func:`training_memory`) for the network ``trainer`` builds on its plans; built on
    the meta device (nothing allocated). Adds ``arch``, ``target_gb``."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    cls, pm, cm = type(trainer), trainer.plans_manager, trainer.configuration_manager
    in_ch = determine_num_input_channels(pm, cm, trainer.dataset_json)
    heads = trainer.label_manager.num_segmentation_heads
    with torch.device("meta"):
        net = cls.build_network_architecture(pm, cm, in_ch, heads, trainer.enable_deep_supervision)
    arch = cls.arch_for(cm)  # the registry name of the network built
    m = training_memory(arch, cm.network_arch_init_kwargs, cm.patch_size, cm.batch_size, in_ch, heads, net=net)
    m["target_gb"] = float(pm.plans.get("nnunet_ext", {}).get("gpu_memory_target_in_gb", NNUNET_REFERENCE_GB))
    return m


def _dataset_id(dataset_name: str) -> str:
    m = re.match(r"Dataset(\d+)_", dataset_name)
    return str(int(m.group(1))) if m else dataset_name


def check_trainer_fits(trainer, total_memory_bytes: Optional[int] = None, warn=None) -> Optional[str]:
    """Raise :class:`GPUMemoryError` if ``trainer``'s network does not fit ``total_memory_bytes`` (default: the
    trainer's CUDA device); return (and pass to ``warn``) a warning line if it exceeds the plans' target; else
    None."""
    if total_memory_bytes is None:
        dev = trainer.device
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        total_memory_bytes = torch.cuda.get_device_properties(index).total_memory
    device_gb = total_memory_bytes / 1e9
    m = estimate_trainer_memory(trainer)
    est, arch, cm = m["gpu_gb"], m["arch"], trainer.configuration_manager
    what = (f"{type(trainer).__name__} on {trainer.configuration_name} (patch {'x'.join(map(str, cm.patch_size))}, "
            f"batch {cm.batch_size})")
    if est > device_gb:
        d = _dataset_id(trainer.plans_manager.dataset_name)
        target = max(1, math.floor(device_gb))
        message = (f"{what} needs about {est:.1f} GB of GPU memory (nnunet-ext's planner estimate), the GPU has "
                   f"{device_gb:.1f} GB: make plans that fit with 'nnunet-ext plan -d {d} --arch {arch} "
                   f"--gpu-memory-target {target}' and train with 'nnUNetv2_train {d} {trainer.configuration_name} "
                   f"{trainer.fold} -tr {type(trainer).__name__} -p {plans_name_for(arch)}' ({SKIP_ENV}=1 skips "
                   f"this check)")
        refuse(message, GPUMemoryError)
    if est > m["target_gb"]:
        line = (f"warning: {what} needs about {est:.1f} GB of GPU memory (nnunet-ext's planner estimate), more than "
                f"the {m['target_gb']:g} GB its plans were made for; the GPU has {device_gb:.1f} GB")
        (warn or (lambda s: print(s, file=sys.stderr, flush=True)))(line)
        return line
    return None
