"""Time of HD95 + NSD (:func:`nnunet_ext.evaluation.case.surface_metrics`, one MONAI pass) per structure in a CT-sized
volume of 512 x 512 x 200 voxels (issue 14; goal <= 2 s per structure on the CPU with 2 threads).

Three synthetic structures at spacing 2.5 x 0.8 x 0.8 mm (z, y, x), each against a prediction shifted by 2 voxels
along y and x with a bump: a tumour (sphere, r 15 mm), a pancreas-sized ellipsoid (semi-axes 30 x 25 x 60 mm) and a
liver-sized ellipsoid (80 x 90 x 100 mm); plus the empty-prediction case (worst value, no distances). Median wall time
of ``--repeats`` calls, and the part spent on the full-volume work before MONAI (mask checks, the bounding box of
the union through acvl_utils, the crop).

    OMP_NUM_THREADS=2 python benchmarks/surface_metrics_speed.py --threads 2 [--repeats 3]

It is a benchmark, not a test: nothing is asserted (tests/unit/test_metrics.py checks the values).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

SHAPE = (200, 512, 512)
SPACING = (2.5, 0.8, 0.8)


def ellipsoid(semi_axes_mm, center_vox):
    z, y, x = (np.arange(n, dtype=np.float32) for n in SHAPE)
    zz = ((z - center_vox[0]) * SPACING[0] / semi_axes_mm[0]) ** 2
    yy = ((y - center_vox[1]) * SPACING[1] / semi_axes_mm[1]) ** 2
    xx = ((x - center_vox[2]) * SPACING[2] / semi_axes_mm[2]) ** 2
    return (zz[:, None, None] + yy[None, :, None] + xx[None, None, :]) <= 1.0


def prediction_of(ref):
    pred = np.roll(ref, (2, 2), axis=(1, 2))
    zs, ys, xs = np.nonzero(ref)
    c = (int(np.median(zs)), int(ys.max()), int(np.median(xs)))
    pred[c[0] - 3:c[0] + 3, c[1]:c[1] + 6, c[2] - 4:c[2] + 4] = True  # a bump beyond the surface
    return pred


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tolerance", type=float, default=2.0, help="NSD tolerance in mm")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from nnunet_ext.evaluation.case import surface_metrics
    from nnunet_ext.evaluation.surface import crop_to_union

    structures = {"tumour (sphere r 15 mm)": ellipsoid((15, 15, 15), (100, 300, 200)),
                  "pancreas (30 x 25 x 60 mm)": ellipsoid((30, 25, 60), (90, 260, 280)),
                  "liver (80 x 90 x 100 mm)": ellipsoid((80, 90, 100), (100, 230, 160))}
    print(f"volume {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} (x y z) at {SPACING[::-1]} mm, {args.threads} torch thread(s), "
          f"median of {args.repeats}; load average {os.getloadavg()[0]:.2f}")
    print("| structure | voxels | crop (voxels) | HD95 (mm) | NSD | total (s) | full-volume part (s) |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for name, ref in structures.items():
        pred = prediction_of(ref)
        t, res = timed(lambda: surface_metrics(ref, pred, SPACING, args.tolerance), args.repeats)

        def prep():
            r, p = ref.astype(bool, copy=False), pred.astype(bool, copy=False)
            bool(r.any()), bool(p.any())
            return crop_to_union(r, p)

        t_prep, crop = timed(prep, args.repeats)
        print(f"| {name} | {int(ref.sum())} | {crop[0].size} | {res['HD95']:.2f} | {res['NSD']:.3f} | {t:.2f} | "
              f"{t_prep:.2f} |")
    empty = np.zeros(SHAPE, bool)
    t, res = timed(lambda: surface_metrics(structures["tumour (sphere r 15 mm)"], empty, SPACING), args.repeats)
    print(f"| tumour missed (empty prediction) | - | - | {res['HD95']:.2f} (diagonal) | {res['NSD']:.3f} | {t:.2f} "
          f"| - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
