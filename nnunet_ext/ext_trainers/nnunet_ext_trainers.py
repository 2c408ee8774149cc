"""Shim for nnU-Net's ``nnUNet_extTrainer`` lookup (this folder is what ``nnunet-ext env`` exports).

nnU-Net imports the modules of that folder by path and takes ``getattr(module, TRAINER_NAME)``. Everything here is
re-imported from :mod:`nnunet_ext.trainers`, so the class nnU-Net finds is the very class object of the package
(stable identity, pickled by reference), including trainers built by name such as ``..._5epochs``.
"""
from nnunet_ext.trainers import *  # noqa: F401,F403
from nnunet_ext.trainers import __getattr__  # noqa: F401  (PEP 562: names built on demand)
