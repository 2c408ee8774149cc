"""The plain 3D U-Net of the two-stage pancreas method (*two_stage_unet*: "a U-Net is trained for the down-sampled 3D
volume segmentation ... another 3D U-Net [of the same architecture] is trained on the candidate region", Sec. 2.1-2.3,
Fig. 3), registered as ``two_stage_unet``.

What the paper specifies in its text: a 3D U-Net, the *same* architecture in both stages (Sec. 2.3), trained with
``L = L_Dice + gamma * L_Center`` (Eq. 1; the loss is the trainers' business, not the network's), no deep
supervision. The layer widths and depth are only drawn in its Fig. 3, which is not part of the text we have.

What we chose: dynamic_network_architectures' ``PlainConvUNet`` (the encoder-decoder with concatenated skips,
two 3x3x3 convolutions per resolution, transposed-convolution upsampling; no U-Net is rewritten here) with, as
default construction, the classic 3D U-Net shape of Cicek et al. (MICCAI 2016) at the widths of ResDSN so that the
two pancreas networks are comparable: four resolutions, 32-64-128-256 channels, 2x2x2 pooling strides, batch norm
and ReLU, one CT channel, two classes (pancreas / background), no deep supervision. From nnU-Net plans
(``create_from_plans``) everything follows the plans, i.e. it is then nnU-Net's own U-Net; the method's identity is
in its pipeline (coarse stage on a 4x downsampled volume, fine stage on ground-truth boxes + 10 voxels, marginal
voting) and its centre loss, which live in the coarse-to-fine modules.
"""
from dynamic_network_architectures.architectures.unet import PlainConvUNet

from ._registry import register

__all__ = ["PAPER_KWARGS"]

PAPER_KWARGS = dict(
    input_channels=1, num_classes=2, n_stages=4, features_per_stage=[32, 64, 128, 256], conv_op="torch.nn.Conv3d",
    kernel_sizes=[[3, 3, 3]] * 4, strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]], n_conv_per_stage=[2] * 4,
    n_conv_per_stage_decoder=[2] * 3, conv_bias=True, norm_op="torch.nn.BatchNorm3d",
    norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None, dropout_op_kwargs=None, nonlin="torch.nn.ReLU",
    nonlin_kwargs={"inplace": True}, deep_supervision=False,
)



def _register_variants() -> None:
    register("two_stage_unet", PlainConvUNet, family="two_stage_unet", paper_kwargs=PAPER_KWARGS,
             description="3D U-Net of the two-stage pancreas method (PlainConvUNet, 32-256 channels, BN/ReLU, "
                         "same net both stages)")


_register_variants()
