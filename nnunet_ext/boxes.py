"""The one box rule of nnunet-ext: bounding boxes of masks, margins, clipping and rescaling.

Boxes follow acvl_utils' and nnU-Net's convention, per axis ``(lo, hi)`` with ``hi`` exclusive (a slice), here as
tuples of ints. Padding and slicing are acvl_utils' (``pad_bbox``: grow on both sides, clip at ``0`` and at the array
shape; ``bounding_box_to_slice``). The tight box of a mask is computed here rather than with acvl_utils'
``get_bbox_from_mask`` (a Python loop over slices, 3D only) or ``get_bbox_from_mask_npwhere`` (lists every voxel):
0.73 s and 0.37 s on a 512 x 512 x 200 volume against 0.003 s here (benchmarks/surface_metrics_speed.py,
docs/metrics.md). Used by the fine-stage training crops (trainers/c2f.py), ``nnunet-ext predict-c2f``
(nnunet_ext/c2f/pipeline.py, nnunet_ext/c2f/stages.py) and the surface metrics' crop (nnunet_ext/evaluation/surface.py).

Rules (resdsn_c2f Sec. 3.2 / 4.2, two_stage_unet Sec. 2.2: a box of the foreground "enlarged by adding margins"):
- a margin in mm becomes, per axis, the smallest whole number of voxels that covers it (:func:`margin_in_voxels`);
- a fine-stage box gets its margin on the fine model's preprocessed grid, in training and in inference alike
  (:func:`fine_margin_voxels`, with the grid's spacing from :func:`configuration_grid_spacing`);
- a grown box is clipped to the array (:func:`expand_bbox`);
- a box moved to a grid of another size is rounded outwards, so it covers at least the same extent
  (:func:`scale_bbox`).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

Box = Tuple[Tuple[int, int], ...]  # per axis (lo, hi), hi exclusive

__all__ = ["Box", "foreground_bbox", "margin_in_voxels", "fine_margin_voxels", "configuration_grid_spacing",
           "expand_bbox", "bbox_with_margin_mm", "scale_bbox", "box_slices", "box_size"]


def foreground_bbox(mask: np.ndarray) -> Optional[Box]:
    """Tight bounding box ``((lo, hi), ...)`` (hi exclusive) of the nonzero voxels of ``mask``; None if there are none.
    One projection onto the first axis, then one per other axis over the slab of the first axis that it spans."""
    mask = np.asarray(mask)
    if mask.ndim == 0:
        raise ValueError("a box needs an array of at least one axis")
    first = np.flatnonzero(mask.any(axis=tuple(range(1, mask.ndim))) if mask.ndim > 1 else mask)
    if first.size == 0:
        return None
    slab = mask[first[0]: first[-1] + 1]
    box = [(int(first[0]), int(first[-1]) + 1)]
    for ax in range(1, mask.ndim):
        idx = np.flatnonzero(slab.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
        box.append((int(idx[0]), int(idx[-1]) + 1))
    return tuple(box)


def margin_in_voxels(margin_mm, spacing: Sequence[float]) -> Tuple[int, ...]:
    """A margin in mm (scalar or per axis) as whole voxels per axis for ``spacing`` (mm, same axis order): the
    smallest number of voxels that covers at least ``margin_mm`` (``ceil``, with a tolerance for float noise)."""
    spacing = [float(s) for s in spacing]
    if any(not (s > 0 and math.isfinite(s)) for s in spacing):
        raise ValueError(f"spacing must be positive, got {spacing}")
    mm = [float(margin_mm)] * len(spacing) if np.isscalar(margin_mm) else [float(m) for m in margin_mm]
    if len(mm) != len(spacing):
        raise ValueError(f"margin {margin_mm} has {len(mm)} axes, spacing {spacing} has {len(spacing)}")
    if any(m < 0 or not math.isfinite(m) for m in mm):
        raise ValueError(f"margin must be >= 0 mm, got {margin_mm}")
    return tuple(int(math.ceil(m / s - 1e-6)) for m, s in zip(mm, spacing))


def configuration_grid_spacing(config_spacing: Sequence[float], case_spacing_transposed: Sequence[float]) \
        -> List[float]:
    """The spacing (mm) of an nnU-Net configuration's grid for one case, in the plans' transposed axes: the
    configuration's spacing; a 2d configuration (one axis fewer) keeps the case's own spacing between slices (the
    rule of nnU-Net's export)."""
    cs = [float(s) for s in case_spacing_transposed]
    sp = [float(s) for s in config_spacing]
    return sp if len(sp) == len(cs) else [cs[0], *sp]


def fine_margin_voxels(margin_mm: Optional[float], margin_vox: Optional[int], grid_spacing: Sequence[float]) \
        -> Tuple[int, ...]:
    """THE conversion of a fine-stage box margin into voxels of the fine model's preprocessed grid (spacing
    ``grid_spacing``, :func:`configuration_grid_spacing`), used alike by the fine trainers' training crops
    (trainers/c2f.py) and by ``predict-c2f`` / ``crossval-c2f``'s boxes (nnunet_ext/c2f/modes.py), so a box gets the
    same margin in training and inference. ``margin_mm``: :func:`margin_in_voxels`; ``margin_vox`` (the
    ``_fine<K>vox`` trainers): K voxels of that grid on every axis. Exactly one of the two is given."""
    if (margin_mm is None) == (margin_vox is None):
        raise ValueError("give exactly one of margin_mm and margin_vox")
    if margin_vox is not None:
        if int(margin_vox) != margin_vox or margin_vox < 0:
            raise ValueError(f"a margin in voxels must be a whole number >= 0, got {margin_vox}")
        return (int(margin_vox),) * len(grid_spacing)
    return margin_in_voxels(margin_mm, grid_spacing)


def expand_bbox(box: Box, margin_vox: Sequence[int], shape: Sequence[int]) -> Box:
    """``box`` grown by ``margin_vox`` voxels on both sides of every axis, clipped to ``[0, shape)`` (acvl_utils'
    ``pad_bbox``)."""
    from acvl_utils.cropping_and_padding.bounding_boxes import pad_bbox

    if not (len(box) == len(margin_vox) == len(shape)):
        raise ValueError(f"box {box}, margin {margin_vox} and shape {shape} differ in dimensions")
    grown = pad_bbox([[int(lo), int(hi)] for lo, hi in box], [int(m) for m in margin_vox],
                     tuple(int(n) for n in shape))
    return tuple((int(lo), int(hi)) for lo, hi in grown)


def bbox_with_margin_mm(mask: np.ndarray, margin_mm, spacing: Sequence[float]) -> Optional[Box]:
    """Foreground box of ``mask`` + ``margin_mm`` (converted per axis with ``spacing``), clipped at the borders."""
    box = foreground_bbox(mask)
    if box is None:
        return None
    return expand_bbox(box, margin_in_voxels(margin_mm, spacing), mask.shape)


def scale_bbox(box: Box, from_shape: Sequence[int], to_shape: Sequence[int]) -> Box:
    """Map a box on a grid of ``from_shape`` onto a grid covering the same extent with ``to_shape`` voxels (e.g. a
    box on a volume downsampled by R onto the full-resolution volume: multiply by R, two_stage_unet Sec. 2.2).
    Rounds outwards, so the scaled box covers at least the physical extent of the original one."""
    out = []
    for (lo, hi), a, b in zip(box, from_shape, to_shape):
        f = float(b) / float(a)
        out.append((max(0, int(math.floor(lo * f + 1e-6))), min(int(b), int(math.ceil(hi * f - 1e-6)))))
    return tuple(out)


def box_slices(box: Box) -> Tuple[slice, ...]:
    """The box as a tuple of slices (acvl_utils' ``bounding_box_to_slice``)."""
    from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice

    return bounding_box_to_slice(box)


def box_size(box: Box) -> Tuple[int, ...]:
    return tuple(hi - lo for lo, hi in box)
