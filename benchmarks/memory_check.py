"""The planner's memory model against a measurement: peak-RSS rise of one training step on the CPU, per architecture.

    python benchmarks/memory_check.py                 # measure every registered architecture, print the table
    python benchmarks/memory_check.py --recalibrate   # the same, then re-measure kappa on the meta device and
                                                      # replace it by the measured one where the estimate misses
                                                      # by more than --tolerance (writes plans/memory_calibration.json)
    python benchmarks/memory_check.py --archs plain_unet monet --dims 2   # a subset

For every architecture (``nnunet_ext.architectures.list_architectures()``), in 2D and 3D, at two patch sizes each
(plans from ``nnunet_ext.plans.synth.explicit_plans``: nnU-Net's topology for the patch at 1 mm, half its default
widths, batch 2, three classes), a fresh process (forked from this one, so that it does not re-import torch) builds a
trainer (``nnUNetTrainerExt`` with ``arch = ARCH``), records its RSS, then builds the network, optimizer and loss,
sets the SGD momentum buffers as a first step leaves them, and runs one ``trainer.train_step`` (fp32 on the CPU). The
measured figure is the rise of the peak RSS (``VmHWM`` after resetting it through ``/proc/self/clear_refs``) over
the RSS before the network existed: parameters, gradients, optimizer state, activations, loss and the backward's
transients. The estimate is the planner's model of the same quantity
(:func:`nnunet_ext.plans.planner.training_memory`, ``cpu_bytes``): ``batch * kappa * b_ref * fmap`` +
16 bytes per parameter, with ``b_ref`` = PlainConvUNet's fp32 bytes per feature-map element.

Recalibration (``--recalibrate``, one command: it first re-measures kappa on the meta device with
``nnunet_ext.benchmark.calibration.measure_all`` for the current code): ``b_ref`` is PlainConvUNet's exact fp32 saved bytes per
feature-map element (meta device); a constant CPU overhead ``c0`` (oneDNN scratch, allocator, loss;
``cpu_check.overhead_bytes``; in the CPU estimate only) is the median over PlainConvUNet's patches of
``measured - 16 * params - b_ref * batch * fmap``. Then every architecture whose estimate
(``c0`` + 16 bytes x params + ``kappa * b_ref * batch * fmap``, meta kappa) misses a measurement by more than
the tolerance gets ``kappa`` = median over its patches of ``(measured - c0 - 16 * params) / (b_ref * batch *
fmap)``, ``method: cpu-rss-train-step``, the meta value kept as ``meta_kappa``. kappa stays a ratio to
PlainConvUNet, so nnU-Net's GPU reference still applies to it. The RSS of a process does not depend on the
machine's load, so the figures are stable on a busy machine; they depend on the allocator (glibc) and on oneDNN's
workspaces.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from nnunet_ext.benchmark import calibration
from nnunet_ext.benchmark.memory_check import TOLERANCE, add_estimates, measure_all, recalibrate, table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=None, help="architectures (default: every registered one)")
    ap.add_argument("--dims", nargs="+", type=int, default=[2, 3], choices=[2, 3])
    ap.add_argument("--recalibrate", action="store_true",
                    help="re-measure kappa (meta device), apply this measurement, write the calibration table")
    ap.add_argument("--tolerance", type=float, default=TOLERANCE)
    ap.add_argument("--json", default=None, help="also write the raw results to this file")
    ap.add_argument("--from-json", default=None, help="take the results from a --json file instead of measuring")
    args = ap.parse_args(argv)
    from nnunet_ext.architectures import list_architectures
    from nnunet_ext.plans import planner as P

    archs = args.archs or list_architectures()
    if args.recalibrate:
        fresh = calibration.measure_all()  # meta-device kappa of every architecture, current code
        tmp = P.CALIBRATION_FILE.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(fresh, indent=2) + "\n")
        os.replace(tmp, P.CALIBRATION_FILE)  # the estimates below use the fresh meta values
    if args.from_json:
        results = [r for r in json.loads(Path(args.from_json).read_text()) if r["arch"] in archs]
    else:
        results = measure_all(archs, args.dims)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(add_estimates(results)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.recalibrate:
        cal = P.load_calibration()
        changes = recalibrate(results, cal, args.tolerance)
        tmp = P.CALIBRATION_FILE.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(cal, indent=2) + "\n")
        os.replace(tmp, P.CALIBRATION_FILE)
        print("\n" + "\n".join(changes) + f"\nwrote {P.CALIBRATION_FILE}")
        print("\nafter recalibration:\n" + table(add_estimates(results, cal)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
