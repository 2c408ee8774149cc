"""The two coarse-to-fine methods of ``nnunet-ext predict-c2f`` / ``crossval-c2f`` as mode objects (``--mode``), in
the one registry :data:`MODES`. A mode says which boxes the fine model runs on (its box rule and margins), whether
that rule needs the coarse mask on the coarse model's own grid, how the fine masks become the output, the prefix of
``crossval-c2f``'s default results folder and which margins go into ``c2f_times.json``.

**c2f** (ResDSN C2F, resdsn_c2f Sec. 3.1-3.3, 4.1, Fig. 2): one box, the bounding box of the coarse foreground plus
``--margin-mm`` converted per axis with the image's spacing and clipped at the borders (Eq. 4's ``Crop``); the fine
mask pasted into a background volume (Eq. 5's ``DeCrop``) is the output.

**two-stage** (two-stage 3D U-Net, two_stage_unet Sec. 2.2, Fig. 2): box 1 = box of the coarse mask on the coarse
(R-times downsampled) grid + 2 coarse voxels, mapped onto the image with the coarse configuration's actual factor;
box 2 = box of the upsampled coarse mask + 10 voxels. The two pasted fine masks and the upsampled coarse mask are
combined by majority voting (where all three disagree, the fine mask of box 1 is kept).

A box rule is called with the coarse stage's result (:class:`nnunet_ext.c2f.pipeline.CoarseResult`: ``seg`` with
small components removed, in the input's geometry; ``seg_preprocessed`` on the coarse grid when the mode
``needs_preprocessed_seg``; ``spacing``; ``shape``; ``grid_factor(pre_shape)`` and ``to_raw(box, pre_shape)``, the
maps between the coarse grid and the input) and returns the boxes (none: no coarse foreground) and the entries it
adds to the case's record."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple, Union

import numpy as np

from nnunet_ext.boxes import Box, bbox_with_margin_mm, expand_bbox, foreground_bbox
from nnunet_ext.c2f.masks import majority_vote, remove_small_components
from nnunet_ext.errors import UserError
from nnunet_ext.trainers.c2f import DEFAULT_FINE_MARGIN_MM, TWO_STAGE_FINE_MARGIN_VOX  # noqa: F401  (re-exported)

#: two_stage_unet Sec. 2.2: box of the coarse mask + 2 voxels (coarse grid); the box of the upsampled mask gets
#: TWO_STAGE_FINE_MARGIN_VOX (10, as the fine stage's training boxes: trainers/c2f.py)
TWO_STAGE_COARSE_MARGIN_VOX = 2
#: ``--two-stage-margins`` default: (coarse-grid voxels of box 1, voxels of box 2)
TWO_STAGE_MARGINS_VOX = (TWO_STAGE_COARSE_MARGIN_VOX, TWO_STAGE_FINE_MARGIN_VOX)

BoxRule = Callable[..., Tuple[List[Box], dict]]


@dataclass(frozen=True)
class C2FMode:
    """One coarse-to-fine method: everything in which ``--mode c2f`` and ``--mode two-stage`` differ."""
    name: str  # the --mode value; "mode" in c2f_times.json and crossval_c2f.json
    description: str  # its part of --mode's help
    folder_prefix: str  # crossval-c2f's default results folder: <prefix>__<coarse trainer>__<config>__...
    needs_preprocessed_seg: bool  # the box rule reads the coarse mask on the coarse model's own grid
    margin_in_mm: bool  # the box rule takes --margin-mm (True) or --two-stage-margins in voxels (False)
    #: (coarse result, margin_mm, margins_vox, min_component_fraction) -> (boxes, entries of the case's record)
    boxes: BoxRule
    #: (fine masks pasted per box, coarse mask) -> the segmentation
    combine: Callable[[List[np.ndarray], np.ndarray], np.ndarray]

    def margins_record(self, margin_mm: float, margins_vox: Sequence[int]) -> dict:
        """The margins this mode uses, as ``c2f_times.json`` records them (the other one null)."""
        return {"margin_mm": margin_mm if self.margin_in_mm else None,
                "two_stage_margins_vox": None if self.margin_in_mm else list(margins_vox)}


def box_plus_mm(coarse, margin_mm: float, margins_vox: Sequence[int], min_component_fraction: float):
    """resdsn_c2f Eq. 4: the box of the coarse foreground + ``margin_mm`` per axis (image spacing), clipped."""
    box = bbox_with_margin_mm(coarse.seg > 0, margin_mm, coarse.spacing)
    return ([box] if box is not None else []), {}


def two_boxes_plus_voxels(coarse, margin_mm: float, margins_vox: Sequence[int], min_component_fraction: float):
    """two_stage_unet Sec. 2.2: box 1 from the coarse grid's mask + ``margins_vox[0]`` coarse voxels, box 2 from
    the upsampled mask + ``margins_vox[1]`` voxels; records the coarse configuration's actual factor."""
    fg = coarse.seg > 0
    if not fg.any():
        return [], {}
    shape = coarse.shape
    pre_fg = remove_small_components(coarse.seg_preprocessed, min_component_fraction) > 0
    factor = coarse.grid_factor(pre_fg.shape)
    record = {"coarse_factor": [round(f, 4) for f in factor]}
    b_low = foreground_bbox(pre_fg)
    if b_low is None:  # the upsampled mask has foreground the coarse grid lost: use the upsampled box
        margin = [int(math.ceil(margins_vox[0] * f - 1e-6)) for f in factor]
        b1 = expand_bbox(foreground_bbox(fg), margin, shape)
    else:  # box 1 from the coarse grid's mask (+ margin there), scaled by the actual factor
        b_low = expand_bbox(b_low, [margins_vox[0]] * pre_fg.ndim, pre_fg.shape)
        b1 = expand_bbox(coarse.to_raw(b_low, pre_fg.shape), [0] * len(shape), shape)  # clip
    b2 = expand_bbox(foreground_bbox(fg), [margins_vox[1]] * fg.ndim, shape)
    return [b1, b2], record


def fine_mask(pasted: List[np.ndarray], coarse_seg: np.ndarray) -> np.ndarray:
    """resdsn_c2f Eq. 5: the fine mask of the one box, pasted."""
    return pasted[0]


def vote_with_coarse(pasted: List[np.ndarray], coarse_seg: np.ndarray) -> np.ndarray:
    """two_stage_unet Sec. 2.2: majority vote of the two pasted fine masks and the upsampled coarse mask."""
    return majority_vote(pasted[0], pasted[1], coarse_seg.astype(np.uint8))


MODES: Dict[str, C2FMode] = {m.name: m for m in (
    C2FMode("c2f", "ResDSN C2F (one box + margin-mm)", folder_prefix="C2F", needs_preprocessed_seg=False,
            margin_in_mm=True, boxes=box_plus_mm, combine=fine_mask),
    C2FMode("two-stage", "two boxes + majority vote with the upsampled coarse mask (coarse model on a "
                         "make-coarse-config configuration)", folder_prefix="TwoStage", needs_preprocessed_seg=True,
            margin_in_mm=False, boxes=two_boxes_plus_voxels, combine=vote_with_coarse),
)}
DEFAULT_MODE = "c2f"


def get_mode(mode: Union[str, C2FMode]) -> C2FMode:
    """The registered mode of that name (a mode object is returned as is); UserError for an unknown name."""
    if isinstance(mode, C2FMode):
        return mode
    if isinstance(mode, str) and mode in MODES:
        return MODES[mode]
    raise UserError(f"--mode must be {' or '.join(MODES)}, got {mode!r}")


def mode_help() -> str:
    """--mode's help: every mode with its description."""
    return "; ".join(f"{m.name}: {m.description}" for m in MODES.values())
