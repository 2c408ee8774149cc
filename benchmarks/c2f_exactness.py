"""Exactness of ``predict-c2f``'s box path (issue #22, item 3) and its fragmented-coarse guard (item 2), with stand-in
models of known output wrapped in nnU-Net's own predictor (no training, a few seconds on one CPU core).

The stand-in "network" labels 1 where the normalised intensity exceeds a threshold; its logits are step values
(0 for the background, +/-4 for the label: powers of two, so nnU-Net's Gaussian-weighted tile average returns them
exactly whatever the tiling). For each raw spacing (z, y, x) below, a CT-like volume (a body with a bright organ,
zero outside the body so nnU-Net crops it) is predicted

* by the coarse-to-fine path (:func:`nnunet_ext.c2f.pipeline.predict_case`, mode c2f: the coarse stand-in on a
  grid twice as coarse, the fine stand-in on the box + 10 mm of its own grid), and
* by nnU-Net's whole-volume path for the fine stand-in (sliding window over the whole preprocessed image, then
  ``convert_predicted_logits_to_segmentation_with_correct_shape``),

with a non-trivial ``transpose_forward`` and a nonzero crop; the two must agree on every voxel::

    spacing (1.9, 0.7, 0.75): Dice 1.000000, 0 differing voxels

The fragmented case gives the coarse stand-in six equal blobs (each 1/6 of its foreground, under the 0.2 fraction):
the box keeps the largest, so the output is not empty::

    fragmented coarse: 162 foreground voxels

Run: ``OMP_NUM_THREADS=1 python benchmarks/c2f_exactness.py`` (tests/unit/test_c2f_exactness.py asserts the same).
"""
from __future__ import annotations

import contextlib
import io
import sys
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

#: raw spacings (z, y, x) in mm and the plans' transpose_forward for each: none is the identity
CASES: Tuple[Tuple[Tuple[float, float, float], Tuple[int, int, int]], ...] = (
    ((1.0, 0.7, 0.7), (2, 0, 1)),
    ((5.0, 0.6, 0.6), (0, 2, 1)),
    ((1.9, 0.7, 0.75), (1, 2, 0)),
)
#: the fine configuration's target spacing (raw axes, mm); the coarse one is twice as coarse
TARGET = (1.5, 0.9, 0.8)
EXTENT_MM = (60.0, 64.0, 64.0)  # body extent per raw axis
MARGIN_MM = 10.0
BODY_HU, ORGAN_HU = 40.0, 200.0


class StepThreshold(nn.Module):
    """Logits (background 0; label 1 +4 where the normalised intensity > ``threshold``, else -4; other labels -8)."""

    def __init__(self, threshold: float, num_classes: int):
        super().__init__()
        self.threshold, self.num_classes = threshold, num_classes

    def forward(self, x):
        fg = torch.where(x[:, :1] > self.threshold, 4.0, -4.0).to(x.dtype)
        rest = torch.full_like(fg, -8.0).repeat(1, self.num_classes - 2, *([1] * (x.ndim - 2)))
        return torch.cat([torch.zeros_like(fg), fg, rest], 1)


def stand_in_predictor(target_raw: Sequence[float], transpose_forward: Sequence[int], threshold: float = 0.5,
                       tile_step: float = 0.5):
    """nnU-Net's predictor around :class:`StepThreshold`, on in-memory plans (nnunet_ext.plans.synth) with a 3d
    configuration of spacing ``target_raw`` (raw axes) and the given transpose."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_ext.plans.synth import configuration_entry, dataset_json_for, plans_dict

    tf = [int(i) for i in transpose_forward]
    spacing_t = [float(target_raw[i]) for i in tf]
    cfg = configuration_entry([16, 32, 32], [[1, 1, 1]], [[3, 3, 3]], [4], spacing=spacing_t)
    plans = plans_dict({"3d_fullres": cfg}, median_spacing=spacing_t)
    plans.update(transpose_forward=tf, transpose_backward=[int(i) for i in np.argsort(tf)])
    pm = PlansManager(plans)
    dj = dataset_json_for({"background": 0, "organ": 1, "other": 2})
    with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net's note on perform_everything_on_device for the CPU
        p = nnUNetPredictor(tile_step_size=tile_step, use_gaussian=True, use_mirroring=False,
                            perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                            verbose_preprocessing=False, allow_tqdm=False)
    p.manual_initialization(StepThreshold(threshold, 3), pm, pm.get_configuration("3d_fullres"), [{}], dj,
                            "StepThreshold", None)
    return p


def ct_volume(spacing: Sequence[float], blobs: Sequence[Tuple[Sequence[float], float]], seed: int = 0) \
        -> np.ndarray:
    """A body of ``BODY_HU`` (with a little texture) over ``EXTENT_MM``, zero outside it (an uneven border, so
    nnU-Net's crop to the nonzero region is not trivial), with ``ORGAN_HU`` balls ``(centre_mm, radius_mm)``."""
    rng = np.random.default_rng(seed)
    body = [int(round(e / s)) for e, s in zip(EXTENT_MM, spacing)]
    pad = [(2, 1), (3, 0), (0, 4)]
    shape = [b + lo + hi for b, (lo, hi) in zip(body, pad)]
    vol = np.zeros(shape, np.float32)
    inner = tuple(slice(lo, lo + b) for b, (lo, _) in zip(body, pad))
    vol[inner] = BODY_HU + rng.normal(0, 5, body).astype(np.float32)
    grids = np.meshgrid(*[(np.arange(b) + 0.5) * s for b, s in zip(body, spacing)], indexing="ij")
    for centre, radius in blobs:
        ball = sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius ** 2
        vol[inner][ball] = ORGAN_HU
    return vol[None]


class ArrayReader:
    """The reader ``predict_case`` expects, over arrays in memory."""

    def __init__(self, images: Dict[str, Tuple[np.ndarray, List[float]]]):
        self.images = images

    def read_images(self, files):
        image, spacing = self.images[files[0]]
        return image, {"spacing": list(spacing)}


def whole_volume_export(predictor, image: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """nnU-Net's whole-volume path: preprocessing, sliding window over the whole grid, nnU-Net's export."""
    from nnunet_ext.c2f.stages import export, predict_logits, preprocess

    pre = preprocess(predictor, image, spacing)
    return export(predictor, predict_logits(predictor, pre.data), pre.props)


def compare_spacing(spacing: Sequence[float], transpose_forward: Sequence[int]) -> Tuple[float, int, dict]:
    """(Dice, differing voxels, case record) of the box path against nnU-Net's whole-volume export."""
    from nnunet_ext.c2f.pipeline import predict_case

    coarse = stand_in_predictor([2 * t for t in TARGET], transpose_forward, tile_step=0.9)
    fine = stand_in_predictor(TARGET, transpose_forward)
    image = ct_volume(spacing, [((28.0, 30.0, 36.0), 9.0)])
    reader = ArrayReader({"img": (image, list(spacing))})
    seg, _, rec = predict_case("case", ["img"], coarse, fine, reader, "c2f", MARGIN_MM, 0.2)
    ref = whole_volume_export(fine, image, spacing)
    a, b = seg > 0, ref > 0
    dice = float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))
    return dice, int((seg != ref).sum()), rec


def fragmented_coarse() -> Tuple[int, dict, str]:
    """(foreground voxels of the output, record, printed notice) when the coarse foreground is six equal blobs."""
    from nnunet_ext.c2f.pipeline import predict_case

    spacing, tf = (1.0, 1.0, 1.0), (0, 1, 2)
    coarse = stand_in_predictor((1.0, 1.0, 1.0), tf, tile_step=0.9)
    fine = stand_in_predictor((1.0, 1.0, 1.0), tf)
    centres = [(z, y, x) for z in (15.0, 45.0) for y in (12.0, 32.0, 52.0) for x in (32.0,)]
    image = ct_volume(spacing, [(c, 3.5) for c in centres])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        seg, _, rec = predict_case("frag", ["img"], coarse, fine, ArrayReader({"img": (image, list(spacing))}),
                                   "c2f", 2.0, 0.2)
    return int((seg > 0).sum()), rec, out.getvalue()


def run() -> dict:
    """Every line's figures: ``{"spacings": [(spacing, dice, differing, record)], "fragmented": (n, rec, notice)}``."""
    return {"spacings": [(sp, *compare_spacing(sp, tf)) for sp, tf in CASES], "fragmented": fragmented_coarse()}


def main() -> int:
    torch.set_num_threads(1)
    res = run()
    for sp, dice, diff, _ in res["spacings"]:
        print(f"spacing {tuple(sp)}: Dice {dice:.6f}, {diff} differing voxels")
    n, _, _ = res["fragmented"]
    print(f"fragmented coarse: {n} foreground voxels")
    return 0 if all(d == 0 for _, _, d, _ in res["spacings"]) and n > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
