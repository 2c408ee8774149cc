"""Operations on label masks of the coarse-to-fine pipeline: small-component removal (resdsn_c2f Sec. 4.2), pasting
a crop back into a full-size volume (resdsn_c2f Eq. 5's ``DeCrop``) and the two-stage method's majority vote
(two_stage_unet Sec. 2.2)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from nnunet_ext.boxes import Box, box_size, box_slices


def remove_small_components(seg: np.ndarray, min_fraction: float) -> np.ndarray:
    """Set to background every connected component of the foreground (all labels > 0, face connectivity) whose
    size is below ``min_fraction`` of the total foreground (resdsn_c2f Sec. 4.2: 0.2). ``min_fraction <= 0``: no-op.
    Components are labelled and filtered by acvl_utils (``remove_components_cc3d``: connected-components-3d, for 2D
    and 3D arrays; ``remove_components``: scikit-image, any other number of axes)."""
    from acvl_utils.morphology.morphology_helper import remove_components, remove_components_cc3d

    if min_fraction <= 0:
        return seg
    fg = seg > 0
    total = int(fg.sum())
    if total == 0:
        return seg
    threshold = min_fraction * total  # components of at least this many voxels are kept
    if fg.ndim in (2, 3):
        keep = remove_components_cc3d(fg, threshold, "min", connectivity={2: 4, 3: 6}[fg.ndim])
    else:
        keep = remove_components(fg, threshold, "min", connectivity=1)
    if keep.sum() == total:
        return seg
    out = seg.copy()
    out[~keep] = 0
    return out


def paste(crop_seg: np.ndarray, box: Box, shape: Sequence[int], dtype=np.uint8) -> np.ndarray:
    """A full-size background volume of ``shape`` with ``crop_seg`` written into ``box``."""
    if tuple(crop_seg.shape) != box_size(box):
        raise ValueError(f"crop of shape {crop_seg.shape} does not fit box {box}")
    out = np.zeros(shape, dtype=dtype)
    out[box_slices(box)] = crop_seg
    return out


def majority_vote(fine1: np.ndarray, fine2: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """Per-voxel label that at least two of the three masks agree on; ``fine1`` where all three differ."""
    return np.where(fine2 == coarse, fine2, fine1)
