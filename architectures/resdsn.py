"""ResDSN and its residual variants (Zhu, Xia, Shen, Fishman, Yuille: "A 3D Coarse-to-Fine Framework for Volumetric
Medical Image Segmentation", 3DV 2018; here *resdsn_c2f*), as one nnU-Net-adaptive class for 2D and 3D.

The network of resdsn_c2f Sec. 3.4 / Fig. 3:

* **encoder** of four resolution steps ("Conv1a" ... "Conv4b"); each step is one or two 3x3x3 convolutions, each
  followed by batch normalisation and a ReLU, and a 2x2x2 max pooling with stride 2 between steps; channels double
  at every pooling (Conv1a has 32);
* **decoder** of deconvolutions with a 4x4x4 kernel and stride 2 ("DeConv3a" ...), halving the channels, each
  followed by two convolutions (conv -> BN -> ReLU) per resolution step;
* **long residual connections** by element-wise *sum* of the encoder features of a step onto the upsampled decoder
  features of the same step (not concatenation as in the 3D U-Net; Table 1 "Long Res: Sum");
* **deep supervision**: a main 1x1x1 classifier on the last layer ("Res/Conv1b") and two auxiliary classifiers on
  "Conv2b" and "Conv3b" (the last convolution of encoder steps 2 and 3), Eq. (3):
  ``L_overall = L + sum_d xi_d L_d + lambda (||Theta||^2 + sum_d ||Theta_hat_d||^2)`` with ``xi_1 = 0.2``,
  ``xi_2 = 0.4`` (Sec. 3.4) and weight decay 0.0005 (Sec. 4.2). The weights and the L2 term live in the trainer
  (:mod:`nnunet_ext.trainers.resdsn`); the network only provides the heads.

Variants of Table 1 / Table 4 (constructor switches ``long_residual`` / ``short_residual``):

=========  ==============  ===============
name       long residual   short residual
=========  ==============  ===============
ResDSN     sum             no
FResDSN    sum             sum
SResDSN    no              sum
DSN        no              no
=========  ==============  ===============

A *short* residual connection (VoxResNet / V-Net style) adds the input of a stack of convolutions to its output,
``y = F(x) + P(x)``, with ``P`` the identity where channels agree and a 1x1 convolution (He et al.'s projection
shortcut) where they do not (a step whose input comes from the pooled previous step with fewer channels). It is
applied to every convolution stack, encoder and decoder.

nnU-Net adaptation (``create_from_plans``):

* stages, widths, kernel sizes, convolutions per stage and (anisotropic) strides come from the plans; pooling is max
  pooling with kernel = stride per axis (the paper's operator);
* normalisation and non-linearity come from the plans by default (nnU-Net's instance norm / leaky ReLU);
  ``paper_norm_nonlin=True`` switches to the paper's batch norm / ReLU (``create`` uses the paper's ops anyway);
* the deconvolution of a step with plans stride ``s`` along an axis has kernel ``k = 2s + (s mod 2)`` and padding
  ``p = (k - s) / 2`` along that axis: ``(n - 1) s - 2p + k = s n`` exactly, i.e. the paper's ``4, stride 2,
  padding 1`` for ``s = 2`` and a same-size ``3, stride 1, padding 1`` on axes that are not pooled. Where the skip
  is one voxel longer than ``s n`` (an odd length under floor pooling) the missing row comes from the transposed
  convolution's ``output_padding`` (computed by ``forward(x, output_size=skip)``), so the upsampled map always has
  exactly the skip's size and the long residual sum is defined;
* deep supervision follows nnU-Net's convention: ``n_stages - 1`` outputs, highest resolution first, at native
  resolution (nnU-Net downsamples the target instead of the paper's upsampling deconvolutions on the auxiliary
  branches). Output 0 is the paper's main head, outputs 1 and 2 are the paper's auxiliary heads on Conv2b and
  Conv3b; for plans with more than four stages, heads the paper does not have are added on the last convolution of
  encoder steps 4, 5, ... (``ds_source="decoder"`` instead takes every auxiliary head from the decoder step of the
  same resolution, nnU-Net's habit). All heads are always built, so the state_dict is the same with deep supervision
  on and off.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Type, Union

import numpy as np
from dynamic_network_architectures.building_blocks.helper import (convert_conv_op_to_dim, get_matching_batchnorm,
                                                                  get_matching_convtransp)
from dynamic_network_architectures.building_blocks.simple_conv_blocks import StackedConvBlocks
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd

from . import _fast
from ._common import check_stage_list, per_stage, prod
from ._registry import register
from ._scaffold import ScaffoldUNet, UNetDecoder, UNetEncoder, max_pool

__all__ = ["ResDSN", "deconv_kernel_and_padding", "XI_1", "XI_2", "PAPER_WEIGHT_DECAY", "PAPER_KWARGS"]

#: auxiliary loss weights of resdsn_c2f Eq. (3) / Sec. 3.4
XI_1, XI_2 = 0.2, 0.4
#: SGD weight decay of resdsn_c2f Sec. 4.2 (the lambda of Eq. (3) up to the factor 2 of d||w||^2/dw)
PAPER_WEIGHT_DECAY = 5e-4

IntOrSeq = Union[int, List[int], Tuple[int, ...]]


def deconv_kernel_and_padding(stride: int) -> Tuple[int, int]:
    """Kernel and padding of the upsampling deconvolution along one axis with stride ``s``:
    ``k = 2s + (s mod 2)``, ``p = (k - s) / 2``, so that ``(n - 1) s - 2p + k = s n`` for every ``n``.
    ``s = 2`` gives the paper's 4/2/1, ``s = 1`` a same-size 3/1/1."""
    if stride < 1:
        raise ValueError(f"deconvolution stride must be >= 1, got {stride}")
    k = 2 * stride + stride % 2
    return k, (k - stride) // 2


class _ConvStack(nn.Module):
    """``StackedConvBlocks`` (conv -> [dropout] -> norm -> nonlin, ``n`` times), optionally with a short residual
    connection ``y = F(x) + P(x)`` (``P`` identity, or a 1x1 convolution when the channels change)."""

    def __init__(self, n_convs: int, conv_op, in_ch: int, out_ch: int, kernel_size, conv_bias, norm_op,
                 norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs, short_residual: bool):
        super().__init__()
        self.convs = StackedConvBlocks(n_convs, conv_op, in_ch, out_ch, kernel_size, 1, conv_bias, norm_op,
                                       norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs)
        self.short_residual = short_residual
        self.out_channels = out_ch
        if short_residual and in_ch != out_ch:
            self.projection = conv_op(in_ch, out_ch, 1, 1, 0, bias=True)
        else:
            self.projection = None

    def forward(self, x):
        y = self.convs(x)
        if self.short_residual:
            y = y + (x if self.projection is None else self.projection(x))
        return y

    def compute_conv_feature_map_size(self, size: Sequence[int]) -> int:
        out = int(self.convs.compute_conv_feature_map_size(list(size)))
        if self.projection is not None:
            out += self.out_channels * prod(size)
        return out


def _check_poolable(s: int, size: Sequence[int], stride: Sequence[int], input_size: Sequence[int]) -> None:
    for ax, (n, k) in enumerate(zip(size, stride)):
        if n < k:
            raise ValueError(f"ResDSN: stage {s} pools axis {ax} by {k} but the feature map has size {n} there "
                             f"(input size {tuple(input_size)}); use a larger patch or fewer stages")


class ResDSN(ScaffoldUNet):
    """ResDSN of resdsn_c2f (Sec. 3.4, Fig. 3, Table 1) and its variants FResDSN / SResDSN / DSN, 2D or 3D by
    ``conv_op``, following nnU-Net plans. See the module docstring for the paper and the adaptation.

    Parameters (nnU-Net plans names; paper symbols in brackets):
      input_channels, num_classes: input modalities and output classes (2 in the paper);
      n_stages: resolution steps (4); features_per_stage: channels per step (32, 64, 128, 256; Conv1a = 32);
      kernel_sizes: conv kernels per step (3x3x3); strides: pooling per step, ``strides[0]`` must be 1
      (no pooling before Conv1a; then 2x2x2); n_conv_per_stage: convolutions per encoder step (1, 2, 2, 2:
      Conv1a; Conv2a-b; Conv3a-b; Conv4a-b); n_conv_per_stage_decoder: convolutions per decoder step, deepest
      first (2, 2, 2);
      long_residual: element-wise sum of the encoder step onto the upsampled decoder features (Table 1 "Long Res");
      short_residual: ``y = F(x) + P(x)`` around every convolution stack (Table 1 "Short Res");
      deep_supervision: return all heads (main, Conv2b [aux, xi_2 in our trainer], Conv3b [aux, xi_1], extra heads)
      instead of the main head only;
      ds_source: ``"encoder"`` (the paper: auxiliary heads on the encoder's Conv{s}b) or ``"decoder"``;
      paper_norm_nonlin: replace the plans' norm/nonlin by the paper's batch norm (eps 1e-5, affine) and ReLU.
    """

    def __init__(self, input_channels: int, n_stages: int, features_per_stage: IntOrSeq, conv_op: Type[_ConvNd],
                 kernel_sizes: IntOrSeq, strides: IntOrSeq, n_conv_per_stage: IntOrSeq, num_classes: int,
                 n_conv_per_stage_decoder: IntOrSeq, conv_bias: bool = True,
                 norm_op: Optional[Type[nn.Module]] = None, norm_op_kwargs: Optional[dict] = None,
                 dropout_op: Optional[Type[_DropoutNd]] = None, dropout_op_kwargs: Optional[dict] = None,
                 nonlin: Optional[Type[nn.Module]] = None, nonlin_kwargs: Optional[dict] = None,
                 deep_supervision: bool = False, long_residual: bool = True, short_residual: bool = False,
                 ds_source: str = "encoder", paper_norm_nonlin: bool = False):
        super().__init__()
        dim = convert_conv_op_to_dim(conv_op)
        if n_stages < 2:
            raise ValueError(f"ResDSN: n_stages must be >= 2 (one pooling at least), got {n_stages}")
        if ds_source not in ("encoder", "decoder"):
            raise ValueError(f"ResDSN: ds_source must be 'encoder' or 'decoder', got {ds_source!r}")
        features_per_stage = per_stage("features_per_stage", features_per_stage, n_stages, owner="ResDSN")
        n_conv_per_stage = per_stage("n_conv_per_stage", n_conv_per_stage, n_stages, owner="ResDSN")
        kernel_sizes = check_stage_list("kernel_sizes", kernel_sizes, n_stages, dim, owner="ResDSN", odd=True,
                                        axis_sep=" ")
        strides = check_stage_list("strides", strides, n_stages, dim, owner="ResDSN", axis_sep=" ")
        for ax, st in enumerate(strides[0]):
            if st != 1:
                raise ValueError(f"ResDSN: stage 0 axis {ax}: stride {st} not allowed (stage 0 must not pool: ResDSN "
                                 f"predicts at input size)")
        for s in range(n_stages):
            if n_conv_per_stage[s] < 1:
                raise ValueError(f"ResDSN: stage {s}: n_conv_per_stage must be >= 1, got {n_conv_per_stage[s]}")
        if paper_norm_nonlin:
            norm_op, norm_op_kwargs = get_matching_batchnorm(conv_op), {"eps": 1e-5, "affine": True}
            nonlin, nonlin_kwargs = nn.ReLU, {"inplace": True}
        self.long_residual, self.short_residual = long_residual, short_residual
        common = (conv_bias, norm_op, norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs,
                  short_residual)
        n_dec = [n_conv_per_stage_decoder] * (n_stages - 1) if isinstance(n_conv_per_stage_decoder, (int, np.integer)) \
            else list(n_conv_per_stage_decoder)
        if len(n_dec) != n_stages - 1:
            raise ValueError(f"ResDSN: n_conv_per_stage_decoder needs {n_stages - 1} entries (n_stages - 1), "
                             f"got {len(n_dec)}")
        strides, kernel_sizes = [list(st) for st in strides], [list(k) for k in kernel_sizes]
        # encoder (Conv1a ... Conv4b): max pooling with kernel = stride, then a stack of convolutions
        self.encoder = UNetEncoder(
            input_channels, features_per_stage, strides, conv_op=conv_op, kernel_sizes=kernel_sizes,
            make_down=lambda s, cin, st: max_pool(conv_op, st),
            make_block=lambda s, cin, c: _ConvStack(n_conv_per_stage[s], conv_op, cin, c, kernel_sizes[s], *common),
            check_size=_check_poolable)
        # decoder (DeConv3a ... Res/Conv1b): deconvolution to the skip's size, long residual sum, convolutions;
        # seg_layers[s] is the 1x1 classifier at resolution s (0: the main head; 1, 2: Conv2b, Conv3b with ds_source
        # "encoder", the paper's auxiliary heads)
        feats = features_per_stage
        transp_op = get_matching_convtransp(conv_op)

        def make_up(s):
            kp = [deconv_kernel_and_padding(st) for st in strides[s + 1]]
            return transp_op(feats[s + 1], feats[s], kernel_size=[k for k, _ in kp], stride=strides[s + 1],
                             padding=[p for _, p in kp], bias=conv_bias)

        self.decoder = UNetDecoder(
            self.encoder, num_classes, deep_supervision, make_up=make_up, match_skip_size=True,
            fuse="sum" if long_residual else "none", heads_by_resolution=True, head_taps=ds_source,
            make_stage=lambda s: _ConvStack(n_dec[n_stages - 2 - s], conv_op, feats[s], feats[s], kernel_sizes[s],
                                            *common),
            make_head=lambda s: conv_op(feats[s], num_classes, 1, 1, 0, bias=True))
        _fast.fold_units(self)  # an eval-mode BatchNorm folded into its convolution (same state_dict)
        _fast.fast_convs(self)  # 3D convolutions off PyTorch's native CPU kernel (same state_dict)

    def check_input_size(self, input_size):
        if len(input_size) != len(self.encoder.strides[0]):
            raise ValueError(f"ResDSN: input_size {tuple(input_size)} must have {len(self.encoder.strides[0])} "
                             f"spatial axes (no batch/channel axes)")

    @staticmethod
    def initialize(module):
        InitWeights_He(1e-2)(module)


#: the paper's configuration (resdsn_c2f Sec. 3.4 / 4.1 / Fig. 3): 64^3 CT patches, one channel, pancreas vs
#: background, four steps with 32-64-128-256 channels, Conv1a alone in step 1, BN + ReLU, 1x1x1 main head.
PAPER_KWARGS = dict(
    input_channels=1, num_classes=2, n_stages=4, features_per_stage=[32, 64, 128, 256], conv_op="torch.nn.Conv3d",
    kernel_sizes=[[3, 3, 3]] * 4, strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
    n_conv_per_stage=[1, 2, 2, 2], n_conv_per_stage_decoder=[2, 2, 2], conv_bias=True,
    norm_op="torch.nn.BatchNorm3d", norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None,
    dropout_op_kwargs=None, nonlin="torch.nn.ReLU", nonlin_kwargs={"inplace": True}, deep_supervision=True,
)


def _register_variants() -> None:
    """The four networks of resdsn_c2f Table 1, all at the paper configuration."""
    register("resdsn", ResDSN, family="resdsn", paper_kwargs=PAPER_KWARGS,
             variant_kwargs=dict(long_residual=True, short_residual=False),
             description="ResDSN (resdsn_c2f): long residual sums, max pooling, 4x4x4 deconvs, "
                         "DS heads on Conv2b/Conv3b")
    register("resdsn_full", ResDSN, family="resdsn", paper_kwargs=PAPER_KWARGS,
             variant_kwargs=dict(long_residual=True, short_residual=True),
             description="FResDSN (resdsn_c2f Table 1): ResDSN with long and short residual sums")
    register("sresdsn", ResDSN, family="resdsn", paper_kwargs=PAPER_KWARGS,
             variant_kwargs=dict(long_residual=False, short_residual=True),
             description="SResDSN (resdsn_c2f Table 1, VoxResNet-like): short residual sums only, deep supervision")
    register("dsn", ResDSN, family="resdsn", paper_kwargs=PAPER_KWARGS,
             variant_kwargs=dict(long_residual=False, short_residual=False),
             description="DSN (resdsn_c2f Table 1, 3D DSN): neither long nor short residuals, deep supervision only")


_register_variants()
