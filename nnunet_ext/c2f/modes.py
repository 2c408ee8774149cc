"""The two coarse-to-fine methods of ``nnunet-ext predict-c2f`` / ``crossval-c2f`` as mode objects (``--mode``), in
the one registry :data:`MODES`. A mode says which boxes the fine model runs on (its box rule), whether it needs the
coarse mask in the input's geometry, how the fine masks become the output, the prefix of ``crossval-c2f``'s default
results folder and which margins go into ``c2f_times.json``.

Every box is taken from the coarse argmax on the coarse model's OWN grid (its components chosen by
:func:`nnunet_ext.c2f.masks.remove_small_components`: the largest plus those >= the fraction), mapped onto the fine
model's preprocessed grid (rounded outwards), and grown there by the fine margin in voxels of that grid
(:func:`nnunet_ext.boxes.fine_margin_voxels`, the conversion the fine trainers' training crops use).

**c2f** (ResDSN C2F, resdsn_c2f Sec. 3.1-3.3, 4.1, Fig. 2): one box, the bounding box of the coarse foreground plus
the margin (Eq. 4's ``Crop``); the fine mask pasted into a background volume (Eq. 5's ``DeCrop``) is the output.

**two-stage** (two-stage 3D U-Net, two_stage_unet Sec. 2.2, Fig. 2): box 1 = box of the coarse mask on the coarse
(R-times downsampled) grid + 2 coarse voxels, mapped onto the fine grid; box 2 = box of the coarse mask on the fine
grid + the fine margin (the paper's "10 pixels", here in mm as the fine trainer's). The two pasted fine masks and the
upsampled coarse mask are combined by majority voting (where all three disagree, the fine mask of box 1 is kept).

A box rule is called with the coarse stage's result (:class:`nnunet_ext.c2f.pipeline.CoarseResult`: ``grid``, the
chosen coarse mask on the coarse grid; ``to_fine(box)``, a coarse-grid box onto the fine grid; ``fine_shape``;
``fine_margin_vox``; ``factor``, input voxels per coarse voxel) and the mode's coarse-grid margins, and returns the
boxes on the fine grid (none: no coarse box) and the entries it adds to the case's record."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nnunet_ext.boxes import Box, expand_bbox, foreground_bbox
from nnunet_ext.c2f.masks import majority_vote
from nnunet_ext.errors import UserError
from nnunet_ext.trainers.c2f import DEFAULT_FINE_MARGIN_MM  # noqa: F401  (re-exported)

#: two_stage_unet Sec. 2.2: box of the coarse mask + 2 voxels (coarse grid); box 2's margin is the fine margin (mm)
TWO_STAGE_COARSE_MARGIN_VOX = 2
#: ``--two-stage-coarse-margin`` default: (coarse-grid voxels of box 1,)
TWO_STAGE_MARGINS_VOX = (TWO_STAGE_COARSE_MARGIN_VOX,)

BoxRule = Callable[..., Tuple[List[Box], dict]]


@dataclass(frozen=True)
class C2FMode:
    """One coarse-to-fine method: everything in which ``--mode c2f`` and ``--mode two-stage`` differ."""
    name: str  # the --mode value; "mode" in c2f_times.json and crossval_c2f.json
    description: str  # its part of --mode's help
    folder_prefix: str  # crossval-c2f's default results folder: <prefix>__<coarse trainer>__<config>__...
    needs_raw_coarse: bool  # combine reads the coarse mask exported to the input's geometry
    uses_coarse_margin: bool  # the box rule takes --two-stage-coarse-margin (coarse-grid voxels)
    #: (coarse result, coarse-grid margins) -> (boxes on the fine grid, entries of the case's record)
    boxes: BoxRule
    #: (fine masks per box in the input's geometry, coarse mask in the input's geometry or None) -> segmentation
    combine: Callable[[List[np.ndarray], Optional[np.ndarray]], np.ndarray]

    def margins_record(self, margin_mm: Optional[float], margin_vox: Optional[int],
                       coarse_margins: Sequence[int]) -> dict:
        """The margins this mode uses, as ``c2f_times.json`` records them."""
        return {"margin_mm": margin_mm, "margin_vox": margin_vox,
                "two_stage_coarse_margin_vox": int(coarse_margins[0]) if self.uses_coarse_margin else None}


def box_plus_margin(coarse, coarse_margins: Sequence[int]):
    """resdsn_c2f Eq. 4: the box of the chosen coarse foreground, on the fine grid, + the fine margin, clipped."""
    box = foreground_bbox(coarse.grid > 0)
    fine = None if box is None else coarse.to_fine(box)
    if fine is None:
        return [], {}
    return [expand_bbox(fine, coarse.fine_margin_vox, coarse.fine_shape)], {}


def two_boxes(coarse, coarse_margins: Sequence[int]):
    """two_stage_unet Sec. 2.2: box 1 = coarse-grid box + ``coarse_margins[0]`` coarse voxels, onto the fine grid;
    box 2 = the coarse box on the fine grid + the fine margin. Records the coarse configuration's actual factor."""
    box = foreground_bbox(coarse.grid > 0)
    fine = None if box is None else coarse.to_fine(box)
    if fine is None:
        return [], {}
    b1 = coarse.to_fine(expand_bbox(box, [int(coarse_margins[0])] * coarse.grid.ndim, coarse.grid.shape))
    b2 = expand_bbox(fine, coarse.fine_margin_vox, coarse.fine_shape)
    return [b1, b2], {"coarse_factor": [round(f, 4) for f in coarse.factor]}


def fine_mask(pasted: List[np.ndarray], coarse_seg: Optional[np.ndarray]) -> np.ndarray:
    """resdsn_c2f Eq. 5: the fine mask of the one box, pasted."""
    return pasted[0]


def vote_with_coarse(pasted: List[np.ndarray], coarse_seg: Optional[np.ndarray]) -> np.ndarray:
    """two_stage_unet Sec. 2.2: majority vote of the two pasted fine masks and the upsampled coarse mask."""
    return majority_vote(pasted[0], pasted[1], coarse_seg.astype(np.uint8))


MODES: Dict[str, C2FMode] = {m.name: m for m in (
    C2FMode("c2f", "ResDSN C2F (one box + the fine margin)", folder_prefix="C2F", needs_raw_coarse=False,
            uses_coarse_margin=False, boxes=box_plus_margin, combine=fine_mask),
    C2FMode("two-stage", "two boxes + majority vote with the upsampled coarse mask (coarse model on a "
                         "make-coarse-config configuration)", folder_prefix="TwoStage", needs_raw_coarse=True,
            uses_coarse_margin=True, boxes=two_boxes, combine=vote_with_coarse),
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
