"""Preview PNGs of predictions (``--preview``): per case the three orthogonal planes through each structure's centre,
and one overview with a thumbnail per case. matplotlib with the Agg backend (no GUI).

The CT is shown in an abdomen window (width 400, level 40 HU: -160..240 HU black to white), the labels overlaid in
:data:`COLOURS` with opacity :data:`ALPHA`, a legend naming the labels present. A case's figure has one row per
structure present (axial, coronal, sagittal through the centroid of its voxels; one row through the volume's centre
if none), :data:`PANEL_PX` pixels per panel plus :data:`LEGEND_PX` for the legend; pixels keep their physical aspect
(spacing). Planes are shown in index order: axial with the first row at the top, coronal and sagittal with the
last slice at the top (head up for the usual LPS-ordered CT).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

WINDOW = (40.0, 400.0)  # level, width (HU)
ALPHA = 0.45
#: label value -> RGB (0..255); label k > len uses colour ((k - 1) mod len)
COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230)]
PANEL_PX, LEGEND_PX, DPI = 300, 50, 100
THUMB_PX = 200


def colour(value: int) -> Tuple[int, int, int]:
    return COLOURS[(int(value) - 1) % len(COLOURS)]


def windowed(image: np.ndarray) -> np.ndarray:
    """The image in the abdomen window, 0..1."""
    level, width = WINDOW
    return np.clip((image.astype(np.float32) - (level - width / 2)) / width, 0, 1)


def composite(img2d: np.ndarray, lab2d: np.ndarray) -> np.ndarray:
    """RGB uint8: the windowed CT in grey, each label's colour blended over it with opacity :data:`ALPHA`."""
    grey = windowed(img2d) * 255
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for v in np.unique(lab2d):
        if v:
            m = lab2d == v
            rgb[m] = (1 - ALPHA) * rgb[m] + ALPHA * np.asarray(colour(v), np.float32)
    return np.round(rgb).astype(np.uint8)


def _planes(image, labels, centre) -> List[Tuple[str, np.ndarray, np.ndarray, bool]]:
    z, y, x = centre
    return [("axial", image[z], labels[z], False), ("coronal", image[:, y, :], labels[:, y, :], True),
            ("sagittal", image[:, :, x], labels[:, :, x], True)]


def _show(ax, img2d, lab2d, aspect, lower, px: int):
    # nearest-neighbour shown at about px pixels: taking every k-th voxel first gives the same picture, cheaper
    k = max(1, int(np.ceil(max(img2d.shape) / px)))
    ax.imshow(composite(img2d[::k, ::k], lab2d[::k, ::k]), aspect=aspect, origin="lower" if lower else "upper",
              interpolation="nearest")
    ax.set_axis_off()


def preview_size(n_rows: int) -> Tuple[int, int]:
    """(width, height) in pixels of a case preview with ``n_rows`` rows."""
    return 3 * PANEL_PX, max(n_rows, 1) * PANEL_PX + LEGEND_PX


def write_case_preview(image: np.ndarray, labels: np.ndarray, spacing_xyz: Sequence[float], names: Dict[int, str],
                       path, title: str = "", boxes: Optional[list] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Write the case preview PNG (``image``, ``labels``: z, y, x); returns the axial thumbnail (image, labels)
    through the largest structure's centre for :func:`write_overview`. ``boxes``: ``find_objects(labels)`` if the
    caller has it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from scipy import ndimage

    sx, sy, sz = (float(s) for s in spacing_xyz)
    lab = labels if labels.dtype.kind in "iu" else labels.astype(np.int32)
    if boxes is None:  # one pass; the rest inside the boxes
        boxes = ndimage.find_objects(lab, max_label=max(names, default=0))
    present, counts, centres = [], [], []
    for v in sorted(names):
        box = boxes[v - 1] if v - 1 < len(boxes) else None
        if box is None:
            continue
        mask = lab[box] == v
        present.append(v)
        counts.append(int(mask.sum()))
        centres.append(tuple(int(round(s.start + c)) for s, c in zip(box, ndimage.center_of_mass(mask))))
    centres = centres or [tuple(s // 2 for s in labels.shape)]
    w, h = preview_size(len(centres))
    fig = Figure(figsize=(w / DPI, h / DPI), dpi=DPI)
    aspects = (sy / sx, sz / sx, sz / sy)
    for r, centre in enumerate(centres):
        for c, (plane, im2, lab2, lower) in enumerate(_planes(image, labels, centre)):
            ax = fig.add_axes((c / 3, 1 - (r + 1) * PANEL_PX / h, 1 / 3, PANEL_PX / h))
            _show(ax, im2, lab2, aspects[c], lower, PANEL_PX)
            what = names[present[r]] if present else "volume centre"
            ax.text(0.02, 0.98, f"{plane}, {what}", transform=ax.transAxes, va="top", color="white", fontsize=8)
    handles = [Patch(facecolor=np.array(colour(v)) / 255, edgecolor="none", label=names[v]) for v in present]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=9,
                   title=title or None, title_fontsize=9)
    elif title:
        fig.text(0.5, 0.02, f"{title}: no structure found", ha="center", fontsize=9)
    fig.patch.set_facecolor("white")
    fig.savefig(str(path), dpi=DPI, pil_kwargs={"compress_level": 1})  # zlib level 6: 0.4 s more per case
    z = centres[int(np.argmax(counts))][0] if present else labels.shape[0] // 2
    return image[z], labels[z]


def write_overview(thumbnails: Dict[str, Tuple[np.ndarray, np.ndarray]], path, names: Dict[int, str],
                   columns: int = 6) -> Optional[Path]:
    """One PNG with an axial thumbnail per case (its largest structure's centre slice), case names as titles."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if not thumbnails:
        return None
    n = len(thumbnails)
    cols = min(columns, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(cols * THUMB_PX / DPI, (rows * THUMB_PX + LEGEND_PX) / DPI), dpi=DPI)
    h = rows * THUMB_PX + LEGEND_PX
    for i, (case, (im2, lab2)) in enumerate(thumbnails.items()):
        r, c = divmod(i, cols)
        ax = fig.add_axes((c / cols, 1 - (r + 1) * THUMB_PX / h, 1 / cols, THUMB_PX / h))
        _show(ax, im2, lab2, "auto", False, THUMB_PX)
        ax.text(0.02, 0.98, case, transform=ax.transAxes, va="top", color="white", fontsize=7)
    handles = [Patch(facecolor=np.array(colour(v)) / 255, edgecolor="none", label=nm)
               for v, nm in sorted(names.items())]
    fig.legend(handles=handles, loc="lower center", ncol=max(len(handles), 1), frameon=False, fontsize=8)
    fig.patch.set_facecolor("white")
    fig.savefig(str(path), dpi=DPI, pil_kwargs={"compress_level": 1})
    return Path(path)
