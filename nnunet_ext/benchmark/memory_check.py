"""The planner's memory model against a measurement: the peak-RSS rise of one training step on the CPU (``measure``,
in a fresh process: ``measure_fresh``), the planner's estimate of it (``add_estimates``), the table, and the
recalibration of the calibration table from the measurements; the command is ``benchmarks/memory_check.py`` (its
docstring and docs/planner.md give the method)."""
from __future__ import annotations

import datetime
import gc
import multiprocessing as mp
import os
import statistics
import sys
import tempfile

from nnunet_ext.plans.planner import PARAM_STATE_BYTES

#: patch sizes per dimension: small enough for a shared 2-core machine (~20 min for all architectures)
PATCHES = {2: [(96, 96), (128, 128)], 3: [(16, 32, 32), (16, 48, 48)]}
BATCH = 2
NUM_CLASSES = 3
STEPS = 1
#: the plans' widths divided by this (nnU-Net's 32 * 2^s, capped at 512 / 320): keeps the run short; architectures
#: with widths of their own (DLKUNet, MoNet) ignore it
WIDTH_DIVISOR = 2
TOLERANCE = 0.15
METHOD = "cpu-rss-train-step"


def _trainer_class(arch: str) -> type:
    from nnunet_ext.trainers import nnUNetTrainerExt

    return type(f"nnUNetTrainerMemoryCheck_{arch}", (nnUNetTrainerExt,), {"arch": arch})


def measure(arch: str, patch, batch: int = BATCH, steps: int = STEPS) -> dict:
    """Peak-RSS rise (bytes) of ``steps`` ``train_step`` calls of ``arch``, measured in THIS process (call it in
    a fresh one), and the planner's estimate of it."""
    import torch

    from nnunet_ext.benchmark.profile import meta_outputs, random_targets, reset_rss_peak, rss_now_kib, rss_peak_kib
    from nnunet_ext.lookup import quiet as _quiet

    plans, dataset_json, conf = synth_plans(patch, batch)
    plans["continue_training"] = False  # nnUNetTrainer.__init__ reads it (nnU-Net's run_training sets it)
    cls = _trainer_class(arch)
    device = torch.device("cpu")
    with _quiet():
        trainer = cls(plans=plans, configuration=conf, fold=0, dataset_json=dataset_json, device=device)
    with torch.device("meta"):
        meta = cls.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1,
                                              NUM_CLASSES, True)
    out_shapes = meta_outputs(meta, (batch, 1, *patch))
    del meta
    gc.collect()
    base = rss_now_kib()
    if base is None or not reset_rss_peak():
        raise RuntimeError("needs Linux /proc (VmRSS, clear_refs) to measure the peak RSS")
    torch.manual_seed(0)
    trainer.network = cls.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1,
                                                     NUM_CLASSES, True)
    trainer.network.train()
    trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
    trainer.loss = trainer._build_loss()
    x = torch.randn((batch, 1, *patch), generator=torch.Generator().manual_seed(1))
    batch_dict = {"data": x, "target": random_targets(out_shapes, batch, NUM_CLASSES, device)}
    # the optimizer's state as after a first step (SGD's momentum buffers), so that one step shows the steady state
    for group in trainer.optimizer.param_groups:
        for p in group["params"]:
            if group.get("momentum", 0):
                trainer.optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
    for _ in range(steps):
        trainer.train_step(batch_dict)
    measured = (rss_peak_kib() - base) * 1024
    return {"arch": arch, "dim": len(patch), "patch": list(patch), "batch": batch, "measured_bytes": measured,
            "params": sum(p.numel() for p in trainer.network.parameters()),
            "fmap": float(trainer.network.compute_conv_feature_map_size(tuple(patch)))}


def add_estimates(results, table_=None) -> list:
    """The planner's model (:func:`training_memory` with the calibration table ``table_``) for each result."""
    from nnunet_ext.plans.planner import training_memory

    for r in results:
        if "error" not in r:
            est = training_memory(r["arch"], arch_kwargs(r["patch"]), r["patch"], r["batch"], 1, NUM_CLASSES,
                                  table=table_)
            r.update(estimate_bytes=est["cpu_bytes"], activation_bytes=est["activation_bytes"],
                     param_state_bytes=est["param_state_bytes"], overhead_bytes=est["cpu_overhead_bytes"],
                     kappa=est["kappa"])
    return results


def _child(arch, patch, conn):
    os.environ.setdefault("nnUNet_compile", "f")
    with tempfile.TemporaryDirectory(prefix="nnunet_ext_memcheck_") as tmp:
        os.environ["nnUNet_results"] = tmp
        try:
            conn.send(measure(arch, patch))
        except Exception as e:  # reported in the table; the others go on
            conn.send({"arch": arch, "dim": len(patch), "patch": list(patch), "error": f"{type(e).__name__}: {e}"[:200]})
    conn.close()


def measure_fresh(arch: str, patch, start_method: str = "fork") -> dict:
    """:func:`measure` in a fresh process (nothing of an earlier measurement in its heap): forked from this one by
    default (no re-import of torch; safe here because this script's process runs no intra-op thread pool before it
    forks), ``"spawn"`` from a process that has run torch's CPU kernels (a forked child can hang in OpenMP)."""
    ctx = mp.get_context(start_method)
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(arch, tuple(patch), child))
    p.start()
    child.close()
    while not parent.poll(1.0) and p.is_alive():
        pass
    try:
        res = parent.recv() if parent.poll(0.1) else None
    except EOFError:
        res = None
    p.join()
    if res is None:
        res = {"arch": arch, "dim": len(patch), "patch": list(patch),
               "error": f"worker exited with status {p.exitcode} (out of memory?)"}
    return res


def same_network_groups(archs):
    """Registered names that build the same network (same class and variant kwargs), first name first."""
    from nnunet_ext.architectures import get_spec

    groups = {}
    for a in archs:
        spec = get_spec(a)
        groups.setdefault((spec.cls, repr(sorted(spec.variant_kwargs.items()))), []).append(a)
    return list(groups.values())


def measure_all(archs, dims=(2, 3)) -> list:
    """:func:`measure_fresh` for each architecture, dimension and patch; a name that builds the same network as
    an earlier one reuses its measurement (``same_as``)."""
    results = []
    for group in same_network_groups(archs):
        for dim in dims:
            for patch in PATCHES[dim]:
                r = measure_fresh(group[0], patch)
                print(f"{group[0]} {dim}d {patch}: " + (r["error"] if "error" in r else
                      f"measured {r['measured_bytes'] / 2 ** 20:.0f} MiB"), file=sys.stderr, flush=True)
                results.append(r)
                results += [{**r, "arch": other, "same_as": group[0]} for other in group[1:]]
    order = {a: i for i, a in enumerate(archs)}
    return sorted(results, key=lambda r: (order[r["arch"]], r["dim"], r["patch"]))


def ratio(r: dict) -> float:
    return r["measured_bytes"] / r["estimate_bytes"]


def table(results) -> str:
    mb = 2 ** 20
    rows = ["| architecture | dim | patch | batch | params (M) | kappa | est. activations (MiB) | est. parameter "
            "state (MiB) | est. CPU overhead (MiB) | est. total (MiB) | measured (MiB) | measured / est. |",
            "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in results:
        name = f"`{r['arch']}`" + (f" (= `{r['same_as']}`)" if r.get("same_as") else "")
        head = f"| {name} | {r['dim']}d | {'x'.join(map(str, r['patch']))} |"
        if "error" in r:
            rows.append(head + f" - | - | - | - | - | - | - | error: {r['error']} | - |")
            continue
        flag = "" if abs(ratio(r) - 1) <= TOLERANCE else " **"
        rows.append(head + f" {r['batch']} | {r['params'] / 1e6:.2f} | {r['kappa']:.3f} | "
                    f"{r['activation_bytes'] / mb:.0f} | {r['param_state_bytes'] / mb:.0f} | "
                    f"{r['overhead_bytes'] / mb:.0f} | "
                    f"{r['estimate_bytes'] / mb:.0f} | {r['measured_bytes'] / mb:.0f} | {ratio(r):.2f}{flag} |")
    return "\n".join(rows)


def fit_reference(results, dim: int, b_ref: float):
    """(overhead c0 in bytes, fp32 bytes per feature-map element) of PlainConvUNet in ``dim`` D: ``b_ref`` is its
    exact saved-tensor count (meta device); c0 = median over its patches of ``measured - 16 * params - b_ref *
    batch * fmap``, at least 0. (A free line fit through two small patches confounds c0 with the slope.) None if
    PlainConvUNet was not measured."""
    res = [r["measured_bytes"] - PARAM_STATE_BYTES * r["params"] - b_ref * r["batch"] * r["fmap"] for r in results
           if r["arch"] == "plain_unet" and r["dim"] == dim and "error" not in r]
    return (max(0.0, statistics.median(res)), b_ref) if res else None


def recalibrate(results, table_: dict, tolerance: float = TOLERANCE) -> list:
    """Apply the measurement to a calibration table (in place; the method: benchmarks/memory_check.py, docs/planner.md); returns what changed."""
    ok = [r for r in results if "error" not in r]
    changes = []
    archs = table_["architectures"]
    overhead = {}
    for dim in (2, 3):
        fit = fit_reference(ok, dim, float(archs["plain_unet"][f"{dim}d"]["bytes_per_element"]))
        if fit is None:
            continue
        c0, b_ref = fit
        overhead[f"{dim}d"] = round(c0)
        changes.append(f"plain_unet {dim}d: fp32 bytes per feature-map element {b_ref:.3f} (meta), CPU overhead "
                       f"{c0 / 2 ** 20:.0f} MiB (median residual of its measurements)")
        for arch in sorted({r["arch"] for r in ok if r["dim"] == dim} - {"plain_unet"}):
            if arch not in archs:
                continue
            rs = [r for r in ok if r["arch"] == arch and r["dim"] == dim]
            entry = archs[arch][f"{dim}d"]
            kappa_meta = entry.get("meta_kappa", entry["kappa"])
            base = [c0 + PARAM_STATE_BYTES * r["params"] for r in rs]
            misses = [abs(r["measured_bytes"] / (c + kappa_meta * b_ref * r["batch"] * r["fmap"]) - 1)
                      for r, c in zip(rs, base)]
            if max(misses) > tolerance:
                kappa = statistics.median((r["measured_bytes"] - c) / (b_ref * r["batch"] * r["fmap"])
                                          for r, c in zip(rs, base))
                entry.update(meta_kappa=kappa_meta, kappa=round(max(kappa, 0.05), 4), method=METHOD)
                changes.append(f"{arch} {dim}d: kappa {kappa_meta:.3f} -> {entry['kappa']:.3f} (the meta value "
                               f"missed by {max(misses):.0%})")
    table_["cpu_check"] = {"method": METHOD, "command": "python benchmarks/memory_check.py --recalibrate",
                           "measured": datetime.date.today().isoformat(), "overhead_bytes": overhead,
                           "patches": {f"{d}d": [list(p) for p in ps] for d, ps in PATCHES.items()},
                           "width_divisor": WIDTH_DIVISOR, "batch": BATCH, "tolerance": tolerance}
    return changes


def synth_plans(patch, batch: int = BATCH):
    """``explicit_plans`` for ``patch`` with the widths divided by :data:`WIDTH_DIVISOR`."""
    from nnunet_ext.plans.synth import explicit_plans

    plans, dataset_json, conf = explicit_plans(patch, batch_size=batch)
    kw = plans["configurations"][conf]["architecture"]["arch_kwargs"]
    kw["features_per_stage"] = [max(1, f // WIDTH_DIVISOR) for f in kw["features_per_stage"]]
    return plans, dataset_json, conf


def arch_kwargs(patch):
    """The architecture kwargs of :func:`synth_plans` for ``patch``."""
    plans, _, conf = synth_plans(patch)
    return plans["configurations"][conf]["architecture"]["arch_kwargs"]
