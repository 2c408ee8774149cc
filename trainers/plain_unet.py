"""Trainer of the plain U-Net baseline: must train exactly what stock ``nnUNetTrainer`` trains."""
from .base import nnUNetTrainerExt


class nnUNetTrainerPlainUNet(nnUNetTrainerExt):
    """nnU-Net's PlainConvUNet through our registry (the check on the machinery)."""
    arch = "plain_unet"
