"""nnU-Net-like plans for ``nnunet-ext benchmark`` (and the memory-aware planner's reference): synthesised in
memory for an explicit patch size, or read from a preprocessed dataset.

Only this module of the benchmark is imported by :mod:`nnunet_ext.plans.planner`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from nnunet_ext.errors import UserError, dataset_name

#: labels of the in-memory dataset.json used with --patch-size (pancreas-like: background, pancreas, tumour)
DEFAULT_LABELS = {"background": 0, "pancreas": 1, "tumour": 2}


def configuration_entry(patch_size: Sequence[int], strides: Sequence[Sequence[int]], kernel_sizes: Sequence[Sequence[int]],
                  features_per_stage: Sequence[int], batch_size: int = 2, spacing: Optional[Sequence[float]] = None,
                  num_input_channels: int = 1, data_identifier: str = "nnUNetPlans_3d_fullres",
                  median_image_size: Optional[Sequence[int]] = None, batch_dice: Optional[bool] = None) -> dict:
    """One entry of a plans file's ``configurations`` as nnU-Net's ``ExperimentPlanner`` writes it: a
    ``PlainConvUNet`` of the given topology (two convs per stage, instance norm, leaky ReLU), CT normalisation,
    nnU-Net's default resampling."""
    patch = [int(p) for p in patch_size]
    dim, n = len(patch), len(strides)
    return {
        "data_identifier": data_identifier, "preprocessor_name": "DefaultPreprocessor",
        "batch_size": int(batch_size), "patch_size": patch,
        "median_image_size_in_voxels": list(median_image_size or [2 * p for p in patch]),
        "spacing": [1.0] * dim if spacing is None else [float(s) for s in spacing],
        "normalization_schemes": ["CTNormalization"] * num_input_channels,
        "use_mask_for_norm": [False] * num_input_channels,
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": n, "features_per_stage": [int(f) for f in features_per_stage],
                "conv_op": f"torch.nn.Conv{dim}d", "kernel_sizes": [list(k) for k in kernel_sizes],
                "strides": [list(st) for st in strides], "n_conv_per_stage": [2] * n,
                "n_conv_per_stage_decoder": [2] * (n - 1), "conv_bias": True,
                "norm_op": f"torch.nn.InstanceNorm{dim}d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
                "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                "nonlin_kwargs": {"inplace": True},
            },
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
        "batch_dice": dim == 3 if batch_dice is None else bool(batch_dice),
    }


def plans_dict(configurations: Dict[str, dict], dataset_name: str = "Dataset999_Benchmark",
               median_spacing: Sequence[float] = (1.0, 1.0, 1.0), median_shape: Sequence[int] = (32, 32, 32),
               num_input_channels: int = 1, intensity: Optional[Dict[str, float]] = None) -> dict:
    """A plans dict as nnU-Net's planner writes it around ``configurations`` (name -> :func:`configuration_entry`);
    ``intensity`` the foreground intensity properties of every channel (CT-like by default; ``{}``: none)."""
    if intensity is None:
        intensity = {"max": 1000.0, "mean": 80.0, "median": 80.0, "min": -1000.0, "percentile_00_5": -100.0,
                     "percentile_99_5": 300.0, "std": 60.0}
    return {
        "dataset_name": dataset_name, "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [float(s) for s in median_spacing],
        "original_median_shape_after_transp": [int(s) for s in median_shape],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": dict(configurations), "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel":
            {str(c): dict(intensity) for c in range(num_input_channels)} if intensity else {},
    }


def dataset_json_for(labels: Optional[Dict[str, int]] = None, num_input_channels: int = 1, num_training: int = 0) -> dict:
    """An in-memory dataset.json: CT channels, ``labels`` (pancreas-like by default)."""
    return {"channel_names": {str(c): "CT" for c in range(num_input_channels)}, "labels": dict(labels or DEFAULT_LABELS),
            "numTraining": num_training, "file_ending": ".nii.gz"}


def explicit_plans(patch_size: Sequence[int], batch_size: int = 2, spacing: Optional[Sequence[float]] = None,
                   num_input_channels: int = 1, labels: Optional[Dict[str, int]] = None,
                   configuration: Optional[str] = None) -> Tuple[dict, dict, str]:
    """nnU-Net-like plans and dataset.json (in memory) for one explicit patch size.

    The topology (strides, kernel sizes, number of stages) comes from nnU-Net's planner function
    ``get_pool_and_conv_props`` for ``spacing`` (default isotropic 1 mm); features, blocks, norm and nonlinearity are
    the ``ExperimentPlanner`` defaults. Raises ValueError if the planner would change the patch (not divisible).
    Returns (plans, dataset_json, configuration name).
    """
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    patch = [int(p) for p in patch_size]
    dim = len(patch)
    if dim not in (2, 3) or min(patch) < 1:
        raise ValueError(f"patch size {patch} must have 2 or 3 positive entries")
    spacing = [1.0] * dim if spacing is None else [float(s) for s in spacing]
    if len(spacing) != dim:
        raise ValueError(f"spacing {spacing} must have as many entries as the patch size {patch}")
    _, strides, kernels, new_patch, _ = get_pool_and_conv_props(spacing, patch, 4, 999999)
    new_patch = [int(p) for p in new_patch]
    if new_patch != patch:
        raise ValueError(f"patch size {patch} is not divisible by the pooling nnU-Net plans for it; "
                         f"use {new_patch}")
    max_feat = 512 if dim == 2 else 320
    configuration_name = configuration or ("2d" if dim == 2 else "3d_fullres")
    cfg = configuration_entry(patch, strides, kernels, [min(max_feat, 32 * 2 ** i) for i in range(len(strides))],
                              batch_size, spacing, num_input_channels, f"nnUNetPlans_{configuration_name}")
    p = plans_dict({configuration_name: cfg}, median_spacing=spacing if dim == 3 else [1.0, *spacing],
                   median_shape=[2 * q for q in patch] if dim == 3 else [16, *[2 * q for q in patch]],
                   num_input_channels=num_input_channels)
    return p, dataset_json_for(labels, num_input_channels), configuration_name


def dataset_plans(dataset: str, configuration: str, plans_identifier: str = "nnUNetPlans") -> Tuple[dict, dict, str]:
    """Plans and dataset.json of a preprocessed dataset (``nnUNet_preprocessed``); UserError for what is missing."""
    from nnunetv2.paths import nnUNet_preprocessed

    if not nnUNet_preprocessed.is_set():
        raise UserError("nnUNet_preprocessed is not set (needed for -d; or use --patch-size)")
    name = dataset_name(dataset)
    folder = Path(str(nnUNet_preprocessed)) / name
    plans_file, dj_file = folder / f"{plans_identifier}.json", folder / "dataset.json"
    for f in (plans_file, dj_file):
        if not f.is_file():
            raise UserError(f"missing {f}")
    plans, dataset_json = json.loads(plans_file.read_text()), json.loads(dj_file.read_text())
    if configuration not in plans.get("configurations", {}):
        raise UserError(f"configuration {configuration!r} not in {plans_file} (has: "
                          f"{', '.join(plans.get('configurations', {}))})")
    return plans, dataset_json, configuration
