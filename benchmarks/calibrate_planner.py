"""Calibration table of the memory-aware planner (``plans/memory_calibration.json``) and the plans it makes.

    python benchmarks/calibrate_planner.py              # re-measure kappa of every registered architecture
                                                        # (meta device only; the full recalibration, with the
                                                        # CPU measurement, is benchmarks/memory_check.py
                                                        # --recalibrate, which runs this first)
    python benchmarks/calibrate_planner.py --check      # exit 1 if the table differs from a fresh measurement
    python benchmarks/calibrate_planner.py --plans-table --targets 8 24   # patch/batch per arch, pancreas-like

kappa of an architecture = its activation bytes per feature-map element / PlainConvUNet's, measured on the meta
device (see ``nnunet_ext.plans.planner``): exact, no GPU needed. ``--plans-table`` runs the planner on a
pancreas-like dataset fingerprint (MSD Task07 after nnU-Net's resampling: median 96x512x512 at 2.5x0.8x0.8 mm,
282 training cases) for each architecture and GPU-memory target and prints the planned 3d_fullres and 2d
patch/batch with the estimated memory. To check the estimate against a GPU, train a few steps with those plans::

    nnunet-ext plan -d D --arch ARCH --gpu-memory-target 8
    nnunet-ext benchmark -d D -c 3d_fullres -p nnUNetPlans_ARCH -tr nnUNetTrainer --device cuda --out b
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from nnunet_ext.benchmark.calibration import measure_all, same

#: MSD Task07 (pancreas) as nnU-Net plans it: median shape after resampling, spacing, cases
PANCREAS = {"spacing": (2.5, 0.8, 0.8), "median_shape": (96, 512, 512), "num_training": 282}


def planning_dataset() -> int:
    """A throw-away synthetic dataset (id 990) in temporary nnU-Net folders (set in ``os.environ``), fingerprinted:
    nnU-Net's planner constructor needs one; the spacing and median shape planned for are passed explicitly."""
    work = Path(tempfile.mkdtemp(prefix="nnunet_ext_planner_"))
    for k in ("raw", "preprocessed", "results"):
        (work / k).mkdir()
        os.environ[f"nnUNet_{k}"] = str(work / k)
    from nnunet_ext.data.synthetic import make_dataset
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset

    make_dataset(work / "raw", dataset_id=990, name="PlannerCalibration", num_cases=2, num_test_cases=0, seed=0)
    extract_fingerprint_dataset(990, num_processes=1, verbose=False, show_progress_bar=False)
    return 990


def plan_configuration(planner, dim: int, like: dict = PANCREAS) -> dict:
    """The configuration ``planner`` makes in ``dim`` D for a dataset ``like`` (spacing, median_shape,
    num_training); PlanningError if it cannot."""
    import numpy as np

    spacing, shape = (like["spacing"], like["median_shape"]) if dim == 3 else \
        (like["spacing"][1:], like["median_shape"][1:])
    n_vox = float(np.prod(like["median_shape"], dtype=np.float64) * like["num_training"])
    return planner.get_plans_for_configuration(spacing, shape, "x", n_vox, {})


def plans_table(targets, archs=None) -> str:
    """Plan a pancreas-like dataset for every architecture at every target (uses a throw-away synthetic dataset
    only to satisfy nnU-Net's planner constructor; spacing and median shape are MSD Task07's)."""
    did = planning_dataset()
    from nnunet_ext.architectures import list_architectures
    from nnunet_ext.plans.planner import ArchitecturePlanner, PlanningError

    rows = ["| architecture | target (GB) | 3d_fullres patch | batch | est. (GB) | 2d patch | batch | est. (GB) |",
            "|---|--:|---|--:|--:|---|--:|--:|"]
    for arch in archs or list_architectures():
        for gb in targets:
            cells = []
            p = ArchitecturePlanner(did, gb, arch=arch)
            for dim in (3, 2):
                try:
                    conf = plan_configuration(p, dim)
                    cells += ["x".join(map(str, conf["patch_size"])), str(conf["batch_size"]),
                              f"{p.estimated_memory_gb(conf):.2f}"]
                except PlanningError as e:
                    cells += [f"too small: {e}", "-", "-"]
            rows.append(f"| `{arch}` | {gb:g} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare the table with a fresh measurement, write nothing")
    ap.add_argument("--plans-table", action="store_true", help="print planned patch/batch per architecture")
    ap.add_argument("--targets", type=float, nargs="+", default=[8, 24], help="GPU-memory targets in GB")
    ap.add_argument("--archs", nargs="+", default=None, help="architectures for --plans-table (default all)")
    args = ap.parse_args(argv)
    from nnunet_ext.plans import planner as P

    if args.plans_table:
        print(plans_table(args.targets, args.archs))
        return 0
    fresh = measure_all()
    if args.check:
        diffs = same(P.load_calibration(), fresh)
        print("\n".join(diffs) if diffs else f"{P.CALIBRATION_FILE.name} is current")
        return 1 if diffs else 0
    tmp = P.CALIBRATION_FILE.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(fresh, indent=2) + "\n")
    os.replace(tmp, P.CALIBRATION_FILE)
    print(f"wrote {P.CALIBRATION_FILE} (meta-device kappa only: 'python benchmarks/memory_check.py --recalibrate' "
          f"applies the CPU measurement on top)")
    for arch, dims in fresh["architectures"].items():
        print(f"{arch:24s} kappa 2d {dims['2d']['kappa']:.3f}  3d {dims['3d']['kappa']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
