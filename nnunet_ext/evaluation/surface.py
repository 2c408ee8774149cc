"""Surface distances of one structure (reference vs prediction mask), computed with MONAI, with the physical spacing.

Surface of a mask: its voxels with a 6-connected background neighbour (outside the volume counts as background);
distances are exact Euclidean distances between voxel centres, MONAI ``use_subvoxels=False``
(``monai.metrics.utils.get_edge_surface_distance``, the routine under ``compute_hausdorff_distance`` and
``compute_surface_dice``). The reductions:

* HD95: max of the two directed 95th percentiles of the distances (reference -> prediction, prediction ->
  reference), as ``monai.metrics.compute_hausdorff_distance(percentile=95, directed=False)``.
* NSD at tolerance tau: (#reference surface voxels within tau of the predicted surface + #predicted surface voxels
  within tau of the reference surface) / (#reference + #predicted surface voxels), as
  ``monai.metrics.compute_surface_dice(use_subvoxels=False)``.

NSD conventions (``--nsd-convention``, :data:`NSD_CONVENTIONS`): ``voxel`` (default) is the count above;
``surfel`` is the area-weighted surface of DeepMind's ``surface-distance`` code (Nikolov et al. 2021, the MSD
challenge's NSD), MONAI ``use_subvoxels=True``: the surface is made of elements at the corners between voxels (each
2x2(x2) neighbourhood), each weighted by its area (2D: contour length) for the masks' spacing, and
NSD = (area of reference elements within tau of the predicted elements + area of predicted elements within tau of
the reference elements) / (total area of both) (:func:`surfel_nsd`). The masks are zero-padded by one voxel first
(as DeepMind's code does), so a mask touching the image border has its border faces. With an ignore mask, an
element is not counted when any voxel of its neighbourhood is ignored. HD95 is always the ``voxel`` convention.

What a metric is when a mask is empty is not decided here: :mod:`nnunet_ext.evaluation.table` applies the rules.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from nnunet_ext.boxes import box_slices, expand_bbox, foreground_bbox
from nnunet_ext.errors import UserError

__all__ = ["NSD_CONVENTIONS", "DEFAULT_NSD_CONVENTION", "check_nsd_convention", "check_nsd_convention_option",
           "prepare_masks", "crop_to_union",
           "SurfaceDistances", "surface_distances", "surfel_nsd"]

#: how NSD counts a surface: voxels (MONAI's default) or DeepMind's area-weighted surface elements
NSD_CONVENTIONS = ("voxel", "surfel")
DEFAULT_NSD_CONVENTION = "voxel"


def check_nsd_convention(convention: str) -> str:
    """``convention`` if it is one of :data:`NSD_CONVENTIONS`; ValueError naming it otherwise."""
    if convention not in NSD_CONVENTIONS:
        raise ValueError(f"--nsd-convention {convention!r}: unknown NSD convention (expected one of "
                         f"{', '.join(NSD_CONVENTIONS)})")
    return convention


def check_nsd_convention_option(convention: str) -> str:
    """:func:`check_nsd_convention` for a value the user gave (``--nsd-convention``, an API argument of the
    commands): ``UserError`` (one line, exit status 2) instead of ValueError."""
    try:
        return check_nsd_convention(convention)
    except ValueError as e:
        raise UserError(str(e)) from None


def prepare_masks(reference, prediction, spacing, nsd_tolerance_mm: float = 2.0, ignore_mask=None):
    """Checked inputs of the surface metrics: boolean masks of one shape, ``spacing`` (mm per axis, in the arrays'
    axis order, nnU-Net's ``properties['spacing']``), ``nsd_tolerance_mm`` >= 0 and an optional boolean
    ``ignore_mask`` (None when it ignores nothing). Axes of size 1 are dropped, so nnU-Net's ``(1, H, W)`` 2D cases
    are measured in 2D; the result must be 2D or 3D. Returns ``(reference, prediction, spacing, ignore_mask)``;
    raises ValueError for bad input."""
    reference = np.asarray(reference).astype(bool, copy=False)
    prediction = np.asarray(prediction).astype(bool, copy=False)
    if reference.shape != prediction.shape:
        raise ValueError(f"reference shape {reference.shape} != prediction shape {prediction.shape}")
    spacing = [float(s) for s in np.atleast_1d(np.asarray(spacing, dtype=float))]
    if len(spacing) != reference.ndim:
        raise ValueError(f"spacing {spacing} has {len(spacing)} entries, the masks have {reference.ndim} axes")
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be positive and finite, got {spacing}")
    if not (math.isfinite(nsd_tolerance_mm) and nsd_tolerance_mm >= 0):
        raise ValueError(f"nsd_tolerance_mm must be finite and >= 0, got {nsd_tolerance_mm}")
    if ignore_mask is not None:
        ignore_mask = np.asarray(ignore_mask).astype(bool, copy=False)
        if ignore_mask.shape != reference.shape:
            raise ValueError(f"ignore_mask shape {ignore_mask.shape} != mask shape {reference.shape}")
        if not ignore_mask.any():
            ignore_mask = None
    # drop singleton axes (nnU-Net represents 2D images as (1, H, W) with a dummy spacing of 999 * max spacing)
    keep = [ax for ax, n in enumerate(reference.shape) if n > 1]
    if len(keep) != reference.ndim:
        new_shape = tuple(reference.shape[ax] for ax in keep)
        reference, prediction = reference.reshape(new_shape), prediction.reshape(new_shape)
        ignore_mask = None if ignore_mask is None else ignore_mask.reshape(new_shape)
        spacing = [spacing[ax] for ax in keep]
    if len(spacing) not in (2, 3):
        raise ValueError(f"surface metrics need 2D or 3D masks (after dropping size-1 axes), got shape "
                         f"{reference.shape}")
    return reference, prediction, spacing, ignore_mask


def crop_to_union(reference: np.ndarray, prediction: np.ndarray, ignore_mask: Optional[np.ndarray] = None):
    """Crop both (non-empty) masks to the bounding box of ``reference | prediction`` plus a 1-voxel border (clipped
    to the array), by nnunet_ext's one box rule (:mod:`nnunet_ext.boxes`). The union's box is the hull of the two
    boxes, so the union of the full volumes is never formed."""
    a, b = foreground_bbox(reference), foreground_bbox(prediction)
    box = tuple((min(x[0], y[0]), max(x[1], y[1])) for x, y in zip(a, b))
    sl = box_slices(expand_bbox(box, [1] * reference.ndim, reference.shape))
    return reference[sl], prediction[sl], (None if ignore_mask is None else ignore_mask[sl])


@dataclass(frozen=True)
class SurfaceDistances:
    """The surfaces of one structure: ``shape`` and ``spacing`` of the measured axes, whether each mask has a voxel
    outside the ignore mask, and (only when both have) the distances of every counted predicted surface voxel to the
    reference surface (``pred_to_ref``) and of every counted reference surface voxel to the predicted surface
    (``ref_to_pred``), as torch tensors in mm."""
    shape: Tuple[int, ...]
    spacing: Tuple[float, ...]
    has_reference: bool
    has_prediction: bool
    pred_to_ref: Optional[object] = None
    ref_to_pred: Optional[object] = None

    @property
    def counts(self) -> Tuple[int, int]:
        """(#counted predicted surface voxels, #counted reference surface voxels); (0, 0) without distances."""
        if self.pred_to_ref is None:
            return 0, 0
        return len(self.pred_to_ref), len(self.ref_to_pred)

    @property
    def finite(self) -> bool:
        import torch

        return self.pred_to_ref is not None and bool(torch.isfinite(self.pred_to_ref).all()
                                                     and torch.isfinite(self.ref_to_pred).all())

    def hd95(self) -> float:
        """Max of the two directed 95th percentiles (``torch.quantile``, linear interpolation), in mm."""
        import torch

        return max(float(torch.quantile(d, 0.95)) for d in (self.pred_to_ref, self.ref_to_pred))

    def nsd(self, tau: float) -> float:
        """Share of the surface voxels of both masks within ``tau`` mm of the other surface."""
        n_pred, n_ref = self.counts
        return float((self.pred_to_ref <= tau).sum() + (self.ref_to_pred <= tau).sum()) / float(n_pred + n_ref)


def surface_distances(reference: np.ndarray, prediction: np.ndarray, spacing: List[float],
                      ignore_mask: Optional[np.ndarray] = None) -> SurfaceDistances:
    """The :class:`SurfaceDistances` of two masks checked by :func:`prepare_masks`, in ONE pass of MONAI's
    ``get_edge_surface_distance`` (symmetric, exact Euclidean, with the spacing). Surface voxels inside
    ``ignore_mask`` are not counted (the surfaces are those of the full masks); a mask with no voxel outside it is
    empty. Both masks are cropped to their union's box plus a 1-voxel border first (:func:`crop_to_union`); MONAI's
    keep-mask (all True without an ignore mask) drops ignored surface points and skips MONAI's own crop."""
    if ignore_mask is None:
        has_ref, has_pred = bool(reference.any()), bool(prediction.any())
    else:  # what lies in ignored voxels only does not count as present
        has_ref, has_pred = bool((reference & ~ignore_mask).any()), bool((prediction & ~ignore_mask).any())
    shape, spacing = tuple(reference.shape), tuple(float(s) for s in spacing)
    if not (has_ref and has_pred):
        return SurfaceDistances(shape, spacing, has_ref, has_pred)

    import torch
    from monai.metrics.utils import get_edge_surface_distance

    reference, prediction, ignore_mask = crop_to_union(reference, prediction, ignore_mask)
    keep = np.ones(reference.shape, dtype=bool) if ignore_mask is None else ~ignore_mask
    with warnings.catch_warnings():
        # MONAI 1.5/1.6 calls its own deprecated `always_return_as_numpy` argument internally
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        _, (d_pred_ref, d_ref_pred), _ = get_edge_surface_distance(
            torch.from_numpy(np.ascontiguousarray(prediction)), torch.from_numpy(np.ascontiguousarray(reference)),
            distance_metric="euclidean", spacing=list(spacing), use_subvoxels=False, symmetric=True,
            mask=torch.from_numpy(keep), warn_empty=False)
    return SurfaceDistances(shape, spacing, has_ref, has_pred, d_pred_ref, d_ref_pred)


def surfel_nsd(reference: np.ndarray, prediction: np.ndarray, spacing: List[float], tolerance_mm: float,
               ignore_mask: Optional[np.ndarray] = None) -> float:
    """NSD of two non-empty masks checked by :func:`prepare_masks` in the ``surfel`` convention (module docstring):
    one pass of MONAI's ``get_edge_surface_distance(use_subvoxels=True)`` on the union's box, zero-padded by one
    voxel. NaN when no element is counted (an ignore mask covering both surfaces)."""
    import itertools

    import torch
    from monai.metrics.utils import get_edge_surface_distance

    reference, prediction, ignore_mask = crop_to_union(reference, prediction, ignore_mask)
    reference, prediction = np.pad(reference, 1), np.pad(prediction, 1)
    corner_shape = tuple(n - 1 for n in reference.shape)  # one element per 2x2(x2) neighbourhood
    keep = np.ones(corner_shape, dtype=bool)
    if ignore_mask is not None:
        ignored = np.pad(ignore_mask, 1)
        for offset in itertools.product((0, 1), repeat=ignored.ndim):
            keep &= ~ignored[tuple(slice(o, o + n) for o, n in zip(offset, corner_shape))]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        (e_pred, e_ref), (d_pred_ref, d_ref_pred), (a_pred, a_ref) = get_edge_surface_distance(
            torch.from_numpy(np.ascontiguousarray(prediction)), torch.from_numpy(np.ascontiguousarray(reference)),
            distance_metric="euclidean", spacing=list(spacing), use_subvoxels=True, symmetric=True,
            mask=torch.from_numpy(keep), warn_empty=False)
    a_pred, a_ref = a_pred[e_pred].double(), a_ref[e_ref].double()
    total = float(a_pred.sum() + a_ref.sum())
    if total == 0:
        return float("nan")
    within = float(a_pred[d_pred_ref <= tolerance_mm].sum() + a_ref[d_ref_pred <= tolerance_mm].sum())
    return within / total
