"""nnunet-ext: pancreas-segmentation networks of five papers as first-class nnU-Net v2 trainers.

Sub-packages: :mod:`nnunet_ext.architectures` (the registry), :mod:`nnunet_ext.trainers` (found by the stock
nnU-Net commands through ``nnUNet_extTrainer``), :mod:`nnunet_ext.plans`.
"""
import os as _os

__version__ = "0.1.0"

#: the folder to put in ``nnUNet_extTrainer``: it holds one shim module that re-exports nnunet_ext.trainers
EXT_TRAINER_DIR = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "ext_trainers")
