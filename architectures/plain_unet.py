"""Plain U-Net baseline: dynamic_network_architectures' ``PlainConvUNet`` (the network of stock nnU-Net,
Isensee et al., Nature Methods 2021), registered as is.

It is the first entry of the registry and the check on the machinery: a trainer of ours that builds
``plain_unet`` from the plans must build exactly the network stock ``nnUNetTrainer`` builds.
"""
from dynamic_network_architectures.architectures.unet import PlainConvUNet

from ._registry import register



def _register_variants() -> None:
    register("plain_unet", PlainConvUNet, family="plain_unet",
             description="nnU-Net's PlainConvUNet (dynamic_network_architectures), the stock baseline")


_register_variants()
