"""The planner's calibration table (``plans/memory_calibration.json``) measured afresh on the meta device, and the
comparison of two tables; the command is ``benchmarks/calibrate_planner.py`` (docs/planner.md)."""
from __future__ import annotations

import datetime


def measure_all() -> dict:
    """A calibration table of every registered architecture, kappa measured on the meta device."""
    from nnunet_ext.architectures import list_architectures
    from nnunet_ext.plans import planner as P

    table = {"method": P.MEASUREMENT_METHOD,
             "description": "kappa = activation bytes per feature-map element of the architecture / PlainConvUNet's; "
                            "bytes autograd saves for backward in one training forward pass (deep supervision on, "
                            "fp32, batch 1) plus the outputs, counted on the meta device at nnU-Net's pancreas-like "
                            "topology (reference_plans). A GPU calibration (method cuda-peak) is to replace it.",
             "reference_plans": {f"{d}d": {k: list(v) if isinstance(v, tuple) else v for k, v in r.items()}
                                 for d, r in P.REFERENCE_PLANS.items()},
             "measured": datetime.date.today().isoformat(),
             "command": "python benchmarks/calibrate_planner.py",
             "architectures": {}}
    for arch in list_architectures():
        table["architectures"][arch] = {f"{d}d": P.measure_memory_factor(arch, d) for d in (2, 3)}
    return table


def meta_kappa(entry: dict):
    """The meta-device kappa of a table entry (kept as ``meta_kappa`` where a CPU measurement replaced it)."""
    return entry.get("meta_kappa", entry.get("kappa"))


def same(a: dict, b: dict, rtol: float = 1e-3) -> list:
    """The architectures and dimensions whose meta-device kappa differs between the tables ``a`` and ``b``."""
    diffs = []
    for arch in sorted(set(a["architectures"]) | set(b["architectures"])):
        for dim in ("2d", "3d"):
            # the meta-device value (an entry that memory_check.py recalibrated keeps it as meta_kappa)
            x, y = (meta_kappa(t["architectures"].get(arch, {}).get(dim, {})) for t in (a, b))
            if x is None or y is None or abs(x - y) > rtol * max(abs(x), abs(y)):
                diffs.append(f"{arch} {dim}: table {x}, measured {y}")
    return diffs
