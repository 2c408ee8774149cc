"""The two stages of ``nnunet-ext predict-c2f`` on nnU-Net's predictor (:mod:`nnunet_ext.c2f.pipeline`): nnU-Net's own
preprocessing of a whole image, a whole-image stage (sliding window + nnU-Net's export) and the fine stage on a box
of the image preprocessed with the fine model's plans (resdsn_c2f Eqs. 4-5: ``Crop`` / ``DeCrop``), plus the maps
between boxes on the raw image and on a stage's preprocessed grid."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from nnunet_ext.boxes import Box, box_size, box_slices, scale_bbox


@dataclass
class Preprocessed:
    """An image preprocessed by nnU-Net's preprocessor of one model's plans (transposed, cropped to the nonzero
    region, normalised over the whole image, resampled): what that model was trained on."""
    data: np.ndarray  # (c, *pre_shape)
    props: dict  # nnU-Net's properties (bbox_used_for_cropping, shape_after_cropping_and_before_resampling, ...)
    seconds: float


@dataclass
class StageOutput:
    seg: np.ndarray  # in the geometry of the (raw) input given to the stage
    seg_preprocessed: Optional[np.ndarray]  # argmax on the stage's preprocessed grid (transposed, cropped to nonzero)
    properties: dict
    seconds: float
    pre: Optional[Preprocessed] = None


def preprocess(predictor, image: np.ndarray, spacing: Sequence[float]) -> Preprocessed:
    """nnU-Net's own preprocessing of the whole image with ``predictor``'s plans."""
    t0 = time.perf_counter()
    pm, cm = predictor.plans_manager, predictor.configuration_manager
    pre = cm.preprocessor_class(verbose=False)
    data, _, props = pre.run_case_npy(image, None, {"spacing": list(spacing)}, pm, cm, predictor.dataset_json)
    return Preprocessed(data, props, time.perf_counter() - t0)


def same_preprocessing(a, b) -> bool:
    """True when two predictors' plans preprocess an image identically (same spacing, normalisation, intensity
    statistics, resampling and axis order), so the coarse stage's preprocessed image can be reused by the fine
    stage (e.g. the ResDSN pair, both on 3d_fullres)."""
    ca, cb = a.configuration_manager.configuration, b.configuration_manager.configuration
    keys = ("spacing", "normalization_schemes", "use_mask_for_norm", "resampling_fn_data",
            "resampling_fn_data_kwargs", "preprocessor_name")
    return (all(ca.get(k) == cb.get(k) for k in keys)
            and list(a.plans_manager.transpose_forward) == list(b.plans_manager.transpose_forward)
            and a.plans_manager.foreground_intensity_properties_per_channel
            == b.plans_manager.foreground_intensity_properties_per_channel)


def _current_spacing(cm, props: dict, transpose_forward) -> List[float]:
    """The spacing of a configuration's grid in the transposed axes (a 2d configuration keeps the slice spacing),
    as nnU-Net's export computes it."""
    spacing_t = [props["spacing"][i] for i in transpose_forward]
    return list(cm.spacing) if len(cm.spacing) == len(props["shape_after_cropping_and_before_resampling"]) \
        else [spacing_t[0], *cm.spacing]


def run_stage(predictor, image: np.ndarray, spacing: Sequence[float], want_preprocessed_seg: bool = False,
              pre: Optional[Preprocessed] = None) -> StageOutput:
    """nnU-Net's own preprocessing, sliding-window prediction and export to the input's shape, for one whole image
    (``pre``: the image already preprocessed with this predictor's plans)."""
    import torch
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    t0 = time.perf_counter()
    pm, cm = predictor.plans_manager, predictor.configuration_manager
    if pre is None:
        pre = preprocess(predictor, image, spacing)
    props = dict(pre.props)
    logits = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(pre.data)).cpu()
    lowres = None
    if want_preprocessed_seg:
        lowres = predictor.label_manager.convert_logits_to_segmentation(logits)
        lowres = lowres.numpy() if hasattr(lowres, "numpy") else np.asarray(lowres)
    seg = convert_predicted_logits_to_segmentation_with_correct_shape(logits, pm, cm, predictor.label_manager, props,
                                                                     return_probabilities=False)
    return StageOutput(np.asarray(seg), lowres, props, time.perf_counter() - t0, pre)


def raw_box_to_preprocessed(box: Box, props: dict, pre_shape: Sequence[int], transpose_forward: Sequence[int]) \
        -> Optional[Tuple[Box, Box]]:
    """A box on the raw image's axes -> (the box on nnU-Net's cropped, transposed raw grid; the box on the
    preprocessed grid of ``pre_shape`` covering it, rounded outwards). None if it lies outside the nonzero crop."""
    bt = [box[i] for i in transpose_forward]
    cshape = props["shape_after_cropping_and_before_resampling"]
    bc = tuple((max(0, int(lo) - int(c[0])), min(int(n), int(hi) - int(c[0])))
               for (lo, hi), c, n in zip(bt, props["bbox_used_for_cropping"], cshape))
    if any(hi <= lo for lo, hi in bc):
        return None
    bp = scale_bbox(bc, cshape, pre_shape)
    bp = tuple((lo, max(hi, lo + 1)) for lo, hi in bp)
    return bc, bp


def run_fine_in_box(predictor, pre: Preprocessed, box: Box, shape: Sequence[int]) -> np.ndarray:
    """The fine stage on one box (resdsn_c2f Eqs. 4-5: ``DeCrop(f_F(Crop(X, box)))``), on the image preprocessed
    with the fine model's plans over the WHOLE image (so normalisation statistics are those of training, where
    nnU-Net normalises whole cases before the fine trainer crops them): the box is mapped onto that grid, the
    crop predicted (sliding window, padded when smaller than the patch), its logits resampled onto the raw
    voxels of the crop with the configuration's own resampling, argmax, pasted into a background volume of
    ``shape`` (the raw image's) and cleared outside ``box``."""
    import torch

    pm, cm, lm = predictor.plans_manager, predictor.configuration_manager, predictor.label_manager
    props = pre.props
    out = np.zeros(shape, np.uint8)
    mapped = raw_box_to_preprocessed(box, props, pre.data.shape[1:], pm.transpose_forward)
    if mapped is None:
        return out
    bc, bp = mapped
    crop = np.ascontiguousarray(pre.data[(slice(None), *box_slices(bp))])
    logits = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(crop)).cpu()
    cshape = props["shape_after_cropping_and_before_resampling"]
    # the raw voxels the preprocessed crop covers, at the whole image's scale (offset rounded: <= 0.5 voxel)
    rc = tuple((max(0, int(round(lo * c / p))), min(int(c), int(round(hi * c / p))))
               for (lo, hi), c, p in zip(bp, cshape, pre.data.shape[1:]))
    logits = cm.resampling_fn_probabilities(logits, box_size(rc), _current_spacing(cm, props, pm.transpose_forward),
                                            [props["spacing"][i] for i in pm.transpose_forward])
    seg = lm.convert_logits_to_segmentation(logits)
    seg = seg.cpu().numpy() if hasattr(seg, "cpu") else np.asarray(seg)
    seg_c = np.zeros(cshape, np.uint8)
    seg_c[box_slices(rc)] = seg
    keep = np.zeros(cshape, bool)
    keep[box_slices(bc)] = True
    seg_c[~keep] = 0
    full = np.zeros(props["shape_before_cropping"], np.uint8)
    full[tuple(slice(int(c[0]), int(c[1])) for c in props["bbox_used_for_cropping"])] = seg_c
    return full.transpose(pm.transpose_backward)


def preprocessed_box_to_raw(box: Box, pre_shape: Sequence[int], props: dict, transpose_backward: Sequence[int]) \
        -> Box:
    """A box on a stage's preprocessed grid of ``pre_shape`` (transposed, cropped to the nonzero region, resampled)
    -> the raw input's axes: scaled onto the cropped region (``scale_bbox``), shifted by nnU-Net's crop, transposed
    back."""
    scaled = scale_bbox(box, pre_shape, props["shape_after_cropping_and_before_resampling"])
    shifted = tuple((lo + int(c[0]), hi + int(c[0])) for (lo, hi), c in zip(scaled, props["bbox_used_for_cropping"]))
    return tuple(shifted[i] for i in transpose_backward)


def coarse_grid_factor(pre_shape: Sequence[int], props: dict, transpose_backward: Sequence[int]) -> Tuple[float, ...]:
    """Raw voxels per coarse-grid voxel on every raw axis: the coarse configuration's ACTUAL decimation (R of
    ``make-coarse-config --factor``, times the ratio of the image's spacing to the source configuration's)."""
    f = [float(c) / float(p) for c, p in zip(props["shape_after_cropping_and_before_resampling"], pre_shape)]
    return tuple(f[i] for i in transpose_backward)
