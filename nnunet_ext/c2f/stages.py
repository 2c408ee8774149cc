"""The two stages of ``nnunet-ext predict-c2f`` on nnU-Net's predictor (:mod:`nnunet_ext.c2f.pipeline`): nnU-Net's own
preprocessing of a whole image, sliding-window logits, the argmax on a stage's own grid, nnU-Net's own export to the
raw geometry, a whole-image stage, and the fine stage on a box of the image preprocessed with the fine model's plans
(resdsn_c2f Eqs. 4-5: ``Crop`` / ``DeCrop``, the box's logits pasted into a whole-grid background tensor and exported
with nnU-Net's function, so the box lands on the raw grid exactly where a whole-volume prediction would), plus the
maps of boxes between the raw image and the stages' preprocessed grids."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from nnunet_ext.boxes import Box, box_slices, configuration_grid_spacing, scale_bbox


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


def grid_spacing_of(predictor, props: dict) -> List[float]:
    """The spacing of ``predictor``'s configuration grid in its transposed axes for a case preprocessed with
    ``props`` (:func:`nnunet_ext.boxes.configuration_grid_spacing`, the rule nnU-Net's export applies)."""
    pm, cm = predictor.plans_manager, predictor.configuration_manager
    return configuration_grid_spacing(cm.spacing, [props["spacing"][i] for i in pm.transpose_forward])


def predict_logits(predictor, data: np.ndarray):
    """nnU-Net's sliding-window logits (folds averaged, mirroring as configured) of preprocessed ``data``, on the
    CPU."""
    import torch

    return predictor.predict_logits_from_preprocessed_data(torch.from_numpy(np.ascontiguousarray(data))).cpu()


def grid_segmentation(predictor, logits) -> np.ndarray:
    """argmax (or nnU-Net's region rule) of logits on the stage's own grid, no resampling."""
    seg = predictor.label_manager.convert_logits_to_segmentation(logits)
    return seg.cpu().numpy() if hasattr(seg, "cpu") else np.asarray(seg)


def grid_foreground(predictor, logits) -> np.ndarray:
    """The foreground (any label) of the argmax on the stage's own grid, as a boolean mask, without the argmax:
    softmax: some label's logit above the background's (a tie is background, as argmax takes the first); regions
    (sigmoid): some logit above 0. Elementwise comparisons instead of an argmax over the channel axis (cost:
    docs/c2f.md)."""
    if predictor.label_manager.has_regions:
        fg = logits[0] > 0
        for c in range(1, logits.shape[0]):
            fg |= logits[c] > 0
    else:
        fg = logits[1] > logits[0]
        for c in range(2, logits.shape[0]):
            fg |= logits[c] > logits[0]
    return fg.cpu().numpy() if hasattr(fg, "cpu") else np.asarray(fg)


def export(predictor, logits, props: dict) -> np.ndarray:
    """nnU-Net's own export of whole-grid logits to the raw image's geometry
    (``convert_predicted_logits_to_segmentation_with_correct_shape``: resampling of the logits, argmax, crop
    reverted, transpose reverted), with the current number of torch threads."""
    import torch
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    seg = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, predictor.plans_manager, predictor.configuration_manager, predictor.label_manager, props,
        return_probabilities=False, num_threads_torch=torch.get_num_threads())
    return np.asarray(seg)


def run_stage(predictor, image: np.ndarray, spacing: Sequence[float], want_preprocessed_seg: bool = False,
              pre: Optional[Preprocessed] = None) -> StageOutput:
    """nnU-Net's own preprocessing, sliding-window prediction and export to the input's shape, for one whole image
    (``pre``: the image already preprocessed with this predictor's plans)."""
    t0 = time.perf_counter()
    if pre is None:
        pre = preprocess(predictor, image, spacing)
    logits = predict_logits(predictor, pre.data)
    lowres = grid_segmentation(predictor, logits) if want_preprocessed_seg else None
    seg = export(predictor, logits, pre.props)
    return StageOutput(seg, lowres, dict(pre.props), time.perf_counter() - t0, pre)


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


def background_logits(label_manager, num_channels: int, dtype=None):
    """Per-channel logits that every nonlinearity of nnU-Net reads as certain background: softmax: 0 for the
    background channel, -1e4 for the others; regions (sigmoid): -1e4 everywhere."""
    import torch

    fill = torch.full((num_channels,), -1e4, dtype=dtype or torch.float32)
    if not label_manager.has_regions:
        fill[0] = 0
    return fill


def box_logits_on_grid(predictor, pre: Preprocessed, box: Box):
    """resdsn_c2f Eqs. 4-5 on the fine model's grid: the fine model's sliding-window logits of the crop ``box``
    of the image preprocessed with its plans over the WHOLE image (``Crop``; the intensities of training, where
    nnU-Net normalises whole cases before the fine trainer crops them), pasted into a logits tensor of the whole
    grid whose outside is certain background (``DeCrop``). Exporting it with nnU-Net's own function
    (:func:`export`) maps the box to the raw grid exactly as a whole-volume prediction is mapped."""
    import torch

    crop = pre.data[(slice(None), *box_slices(box))]
    logits = predict_logits(predictor, crop)
    fill = background_logits(predictor.label_manager, logits.shape[0], logits.dtype)
    whole = torch.empty((logits.shape[0], *pre.data.shape[1:]), dtype=logits.dtype)
    for c in range(logits.shape[0]):
        whole[c].fill_(fill[c])
    whole[(slice(None), *box_slices(box))] = logits
    return whole


def run_fine_in_box(predictor, pre: Preprocessed, box: Box) -> np.ndarray:
    """The fine stage on one box of the fine model's preprocessed grid, exported to the raw image's geometry with
    nnU-Net's whole-grid mapping (:func:`box_logits_on_grid` + :func:`export`)."""
    return export(predictor, box_logits_on_grid(predictor, pre, box), pre.props)


def preprocessed_box_to_raw(box: Box, pre_shape: Sequence[int], props: dict, transpose_backward: Sequence[int]) \
        -> Box:
    """A box on a stage's preprocessed grid of ``pre_shape`` (transposed, cropped to the nonzero region, resampled)
    -> the raw input's axes: scaled onto the cropped region (``scale_bbox``), shifted by nnU-Net's crop, transposed
    back."""
    scaled = scale_bbox(box, pre_shape, props["shape_after_cropping_and_before_resampling"])
    shifted = tuple((lo + int(c[0]), hi + int(c[0])) for (lo, hi), c in zip(scaled, props["bbox_used_for_cropping"]))
    return tuple(shifted[i] for i in transpose_backward)


def grid_box_to_grid(box: Box, src_shape: Sequence[int], src_props: dict, src_transpose_backward: Sequence[int],
                     dst_shape: Sequence[int], dst_props: dict, dst_transpose_forward: Sequence[int]) -> Optional[Box]:
    """A box on one stage's preprocessed grid -> the box on another stage's grid covering it (through the raw
    image's axes, rounded outwards both ways); the same box when both grids are the same preprocessing. None if it
    lies outside the destination's nonzero crop."""
    if (tuple(src_shape) == tuple(dst_shape) and src_props is dst_props):
        return tuple(box)
    raw = preprocessed_box_to_raw(box, src_shape, src_props, src_transpose_backward)
    mapped = raw_box_to_preprocessed(raw, dst_props, dst_shape, dst_transpose_forward)
    return None if mapped is None else mapped[1]


def coarse_grid_factor(pre_shape: Sequence[int], props: dict, transpose_backward: Sequence[int]) -> Tuple[float, ...]:
    """Raw voxels per coarse-grid voxel on every raw axis: the coarse configuration's ACTUAL decimation (R of
    ``make-coarse-config --factor``, times the ratio of the image's spacing to the source configuration's)."""
    f = [float(c) / float(p) for c, p in zip(props["shape_after_cropping_and_before_resampling"], pre_shape)]
    return tuple(f[i] for i in transpose_backward)
