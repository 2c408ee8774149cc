"""Operations on label masks of the coarse-to-fine pipeline: the coarse components that choose the box (resdsn_c2f
Sec. 4.2), pasting a crop back into a full-size volume (resdsn_c2f Eq. 5's ``DeCrop``) and the two-stage method's
majority vote (two_stage_unet Sec. 2.2)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from nnunet_ext.boxes import Box, box_size, box_slices


def remove_small_components(seg: np.ndarray, min_fraction: float) -> np.ndarray:
    """The coarse foreground that chooses the box (resdsn_c2f Sec. 4.2's 0.2 rule, made safe for fragmented masks):
    the LARGEST connected component of the foreground (all labels > 0, face connectivity) plus every other
    component of at least ``min_fraction`` of the total foreground; the rest set to background. A non-empty mask
    therefore never comes back empty (six equal blobs of 1/6 each keep the largest). ``min_fraction <= 0``: no-op.
    Components are labelled by connected-components-3d (``cc3d``, acvl_utils' labeller) for 2D and 3D arrays, by
    scikit-image for any other number of axes. The pipeline uses it only to choose the box, never on its output."""
    if min_fraction <= 0:
        return seg
    fg = seg > 0
    total = int(fg.sum())
    if total == 0:
        return seg
    if fg.ndim in (2, 3):
        import cc3d

        labels = cc3d.connected_components(fg, connectivity={2: 4, 3: 6}[fg.ndim])
    else:
        from skimage.measure import label

        labels = label(fg, connectivity=1)
    idx = np.flatnonzero(fg)  # the foreground is small in a CT: count and clear on its voxels only
    lab = labels.ravel()[idx]
    sizes = np.bincount(lab)
    sizes[0] = 0
    keep_label = sizes >= min_fraction * total  # components of at least this many voxels are kept ...
    keep_label[int(np.argmax(sizes))] = True  # ... and the largest always
    drop = ~keep_label[lab]
    if not drop.any():
        return seg
    out = seg.copy()
    out.ravel()[idx[drop]] = 0
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
