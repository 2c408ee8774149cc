"""nnunet_ext.inference.slice_predictor (``nnunet-ext predict-slices``): the logits of its 2d sliding window equal nnU-Net's
``predict_sliding_window_return_logits`` (one tile per slice, several tiles with Gaussian weighting, padding, mirroring
on/off); the command's exported segmentations equal ``nnUNetv2_predict``'s for a trained model in
tests/integration/test_slice_predictor.py."""
from __future__ import annotations

import pytest
import torch

from nnunet_ext.inference.slice_predictor import MAX_SLICES_PER_FORWARD, SlicePredictor

LABELS = {"background": 0, "pancreas": 1, "tumour": 2}
DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": 0, "file_ending": ".nii.gz"}


def _plans(patch, dim=2):
    conv = "torch.nn.modules.conv.Conv2d" if dim == 2 else "torch.nn.modules.conv.Conv3d"
    norm = f"torch.nn.modules.instancenorm.InstanceNorm{dim}d"
    arch = {"n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": conv, "kernel_sizes": [[3] * dim] * 3,
            "strides": [[1] * dim, [2] * dim, [2] * dim], "n_conv_per_stage": [2] * 3,
            "n_conv_per_stage_decoder": [2] * 2, "conv_bias": True, "norm_op": norm,
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
    conf = {"data_identifier": "x", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": list(patch), "median_image_size_in_voxels": list(patch), "spacing": [1.0] * dim,
            "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {}, "resampling_fn_seg_kwargs": {},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape", "resampling_fn_probabilities_kwargs": {},
            "batch_dice": True,
            "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                             "arch_kwargs": arch, "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}
    c = "2d" if dim == 2 else "3d_fullres"
    return {"dataset_name": "Dataset999_X", "plans_name": "nnUNetPlans", "original_median_spacing_after_transp": [1.0] * 3,
            "original_median_shape_after_transp": [8, 32, 32], "image_reader_writer": "SimpleITKIO",
            "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "configurations": {c: conf},
            "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": {}}, c


def _predictors(patch, mirroring, gaussian=True, dim=2, **ours):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans, c = _plans(patch, dim)
    pm = PlansManager(plans)
    cm = pm.get_configuration(c)
    arch = cm.configuration["architecture"]
    torch.manual_seed(0)
    net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"], 1,
                                 len(LABELS), allow_init=True, deep_supervision=False)
    out = []
    for cls, kw in ((nnUNetPredictor, {}), (SlicePredictor, ours)):
        p = cls(tile_step_size=0.5, use_gaussian=gaussian, use_mirroring=mirroring, perform_everything_on_device=False,
                device=torch.device("cpu"), verbose=False, allow_tqdm=False, **kw)
        p.manual_initialization(net, pm, cm, None, DATASET_JSON, "t",
                                inference_allowed_mirroring_axes=tuple(range(dim)))
        out.append(p)
    return out


@pytest.mark.parametrize("shape, mirroring, gaussian, spf", [
    ((7, 32, 32), False, True, 3),   # one tile per slice, slabs of 3 (last slab 1)
    ((7, 32, 32), True, True, None),  # mirroring: nnU-Net's 4 passes on a batch of slices
    ((5, 50, 70), True, True, 2),    # 2 x 3 tiles per slice: Gaussian weighting in fp32
    ((5, 50, 70), False, False, 4),  # no Gaussian: the plain mean of the overlapping tiles
    ((3, 20, 40), False, True, 2),   # smaller than the patch on one axis: padded, 1 x 2 tiles, padding reverted
])
def test_logits_equal_nnunets_sliding_window(shape, mirroring, gaussian, spf):
    stock, ours = _predictors((32, 32), mirroring, gaussian, slices_per_forward=spf)
    torch.manual_seed(1)
    x = torch.randn(1, *shape)
    ref = stock.predict_sliding_window_return_logits(x)
    got = ours.predict_sliding_window_return_logits(x)
    assert got.shape == ref.shape == (len(LABELS), *shape) and got.dtype == ref.dtype == torch.half
    ref, got = ref.float(), got.float()
    # nnU-Net accumulates g * logits and g in fp16, and g is subnormal in fp16 at the tile corners (exp(-16) of its
    # centre): its logits are a few per mille of their range off the exact ones there; ours are fp32 until stored
    tol = 1e-2 * ref.abs().max().item()
    assert (got - ref).abs().max().item() <= tol, (got - ref).abs().max().item()
    differ = got.argmax(0) != ref.argmax(0)  # only where nnU-Net's two best logits are tied within the tolerance
    top2 = ref.topk(2, dim=0).values
    assert ((top2[0] - top2[1])[differ] <= 2 * tol).all() and differ.float().mean().item() < 0.01
    assert ref.std().item() > 10 * tol  # the tolerance is small against what the logits vary by
    if shape[1:] == (32, 32):  # one tile per slice: the network's logits themselves, batched, rounded to fp16 once
        with torch.inference_mode():
            exact = torch.cat([stock._internal_maybe_mirror_and_predict(x[:, [z]].transpose(0, 1))
                               for z in range(shape[0])]).transpose(0, 1)
        assert (got - exact).abs().max().item() <= 1e-3 * exact.abs().max().item() + 1e-4
        assert (ref - exact).abs().max().item() <= tol


def test_3d_configuration_is_left_to_nnunet():
    stock, ours = _predictors((8, 16, 16), False, dim=3)
    x = torch.randn(1, 8, 20, 16)
    assert torch.equal(ours.predict_sliding_window_return_logits(x), stock.predict_sliding_window_return_logits(x))


def test_slices_per_forward_follows_the_memory_budget():
    _, ours = _predictors((32, 32), False, batch_mb=1)
    per_slice = ours.activation_bytes_per_slice((32, 32))
    # PlainConvUNet's own training estimate of its feature maps, 4 bytes each
    assert per_slice == 4 * ours.network.compute_conv_feature_map_size((32, 32))
    assert ours.slices_per_forward((32, 32), 1000) == max(1, 2 ** 20 // per_slice)
    ours.batch_mb = 10_000
    assert ours.slices_per_forward((32, 32), 1000) == MAX_SLICES_PER_FORWARD
    assert ours.slices_per_forward((32, 32), 5) == 5
    with pytest.raises(ValueError):
        SlicePredictor(batch_mb=0)
