#!/usr/bin/env python
"""CPU inference speed of MoNet against stock nnU-Net 2d — the headline of Knolle, Kaissis et al. (2021):
a CT of 150 slices at 256×256 on an 8-core CPU in 14.88 s by MoNet vs 45.34 s by U-Net (3.0×).

What is timed: nnU-Net's own ``nnUNetPredictor.predict_sliding_window_return_logits`` on one preprocessed-like
volume (``1 × slices × size × size``, z-scored noise: the cost does not depend on the content) for

* ``stock``: nnU-Net's 2d network (``PlainConvUNet``) exactly as the plans describe it;
* ``monet``: MoNet as ``nnUNetTrainerMoNet`` builds it from the SAME plans (the plans' first 3 stages, widths
  16·2^s, see :mod:`nnunet_ext.trainers.monet`);
* optionally ``monet_fulldepth`` (``--archs``): MoNet on every stage of the plans (``nnUNetTrainerMoNetFullDepth``).

Same plans, same thread count (``--threads``), same tile step (``--step``), Gaussian weighting on, with and without
test-time mirroring (nnU-Net's 2d mirroring: axes (0, 1), 4 forward passes per tile). The runs are interleaved
(repeat r: every network × mirroring setting) so that load drifts on a shared machine hit all of them alike; the
median of ``--repeats`` runs is reported, after one untimed warm-up run per setting on ``--warmup-slices`` slices.

The plans are built as nnU-Net's ``ExperimentPlanner.get_plans_for_configuration`` does for a 2d configuration of
``size × size`` slices at spacing 1×1 whose median shape is ``size × size``: patch = the slice,
``get_pool_and_conv_props(spacing, patch, 4, 999999)`` for strides and kernels, features ``min(32·2^s, 512)``,
2 convs per stage, InstanceNorm, LeakyReLU (for 256: 7 stages, 256 → 4). The 2d VRAM-driven patch shrinking
never triggers at 256×256, so this is the plan the planner writes for such data.

Examples::

    OMP_NUM_THREADS=2 python benchmarks/monet_cpu_speed.py --threads 2 --repeats 3          # the full benchmark
    OMP_NUM_THREADS=1 python benchmarks/monet_cpu_speed.py --slices 4 --size 64 --repeats 1 # a quick check
    python benchmarks/monet_cpu_speed.py --device cuda --engines nnunet,slices --repeats 3    # GPU (AMP, as nnU-Net)

Two engines (``--engines``), same networks, same volume, interleaved:

* ``nnunet``: nnU-Net's ``nnUNetPredictor.predict_sliding_window_return_logits`` (one tile per forward, per-tile
  Gaussian weighting and fp16 accumulation);
* ``slices``: :class:`nnunet_ext.inference.slice_predictor.SlicePredictor` (``nnunet-ext predict-slices``): several slices
  per forward (``--slices-per-forward``, default: its memory rule), no weighting when the patch covers the slice;
* ``nnunet_compile``: nnU-Net's engine as ``nnUNet_compile=1 nnUNetv2_predict`` runs it: nnU-Net's
  ``manual_initialization`` wraps the network in ``torch.compile`` (its own code path, the variable set while it
  runs), on a copy of the network without the timing hooks; the compilation happens in the untimed warm-up run,
  whose seconds are printed (``# warm-up``).

For every run the time spent inside the network's forward passes is measured too (hooks on the network), so the
table shows the share of the network vs the sliding-window machinery around it.

It is a benchmark, not a test: nothing is asserted. ``--json PATH`` writes the raw timings.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from typing import Dict, List

import torch

LABELS = {"background": 0, "pancreas": 1, "tumour": 2}


def make_2d_plans(size: int) -> dict:
    """nnU-Net plans with one ``2d`` configuration for ``size × size`` slices (see the module docstring)."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    from nnunet_ext.plans.synth import configuration_entry, plans_dict

    _, strides, kernels, patch, _ = get_pool_and_conv_props([1.0, 1.0], [size, size], 4, 999999)
    features = [min(512, 32 * 2 ** i) for i in range(len(strides))]
    config = configuration_entry(patch, strides, kernels, features, batch_size=12, data_identifier="nnUNetPlans_2d",
                                 median_image_size=[size, size], batch_dice=True)
    return plans_dict({"2d": config}, dataset_name="Dataset999_MoNetSpeed", median_spacing=[2.5, 1.0, 1.0],
                      median_shape=[150, size, size], intensity={})


DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": 0, "file_ending": ".nii.gz"}


def build_networks(plans: dict, archs: List[str]) -> Dict[str, torch.nn.Module]:
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_ext.trainers.monet import nnUNetTrainerMoNet, nnUNetTrainerMoNetFullDepth

    pm = PlansManager(plans)
    cm = pm.get_configuration("2d")
    n_in, n_out = len(DATASET_JSON["channel_names"]), len(LABELS)
    nets = {}
    for a in archs:
        if a == "stock":  # what stock nnUNetTrainer.build_network_architecture builds
            arch = cm.configuration["architecture"]
            nets[a] = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"],
                                             arch["_kw_requires_import"], n_in, n_out, allow_init=True,
                                             deep_supervision=False)
        elif a == "monet":
            nets[a] = nnUNetTrainerMoNet.build_network_architecture(pm, cm, n_in, n_out, False)
        elif a == "monet_fulldepth":
            nets[a] = nnUNetTrainerMoNetFullDepth.build_network_architecture(pm, cm, n_in, n_out, False)
        else:
            raise SystemExit(f"--archs: unknown network {a!r} (stock, monet, monet_fulldepth)")
    return nets


def make_predictor(net, plans, step: float, mirroring: bool, device: torch.device, engine: str = "nnunet",
                   slices_per_forward=None, batch_mb=None):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_ext.inference.slice_predictor import SlicePredictor

    pm = PlansManager(plans)
    cm = pm.get_configuration("2d")
    kw = dict(tile_step_size=step, use_gaussian=True, use_mirroring=mirroring,
              perform_everything_on_device=device.type == "cuda", device=device, verbose=False, allow_tqdm=False)
    if engine in ("nnunet", "nnunet_compile"):
        pred = nnUNetPredictor(**kw)
    elif engine == "slices" or engine.startswith("slices:"):
        n = int(engine.split(":")[1]) if ":" in engine else slices_per_forward
        pred = SlicePredictor(**kw, slices_per_forward=n, batch_mb=batch_mb)
    else:
        raise SystemExit(f"--engines: unknown engine {engine!r} (nnunet, nnunet_compile, slices, slices:N)")
    old = os.environ.get("nnUNet_compile")
    os.environ["nnUNet_compile"] = "1" if engine == "nnunet_compile" else "0"
    try:   # nnU-Net compiles the network here when nnUNet_compile is set (its own code)
        pred.manual_initialization(net, pm, cm, None, DATASET_JSON, "benchmark",
                                   inference_allowed_mirroring_axes=(0, 1))
    finally:
        if old is None:
            os.environ.pop("nnUNet_compile", None)
        else:
            os.environ["nnUNet_compile"] = old
    return pred


class ForwardClock:
    """Seconds spent inside ``net``'s forward passes (pre- and post-forward hooks; synchronised on cuda)."""

    def __init__(self, nets, device):
        self.total, self.calls, self._t0, self.device = 0.0, 0, None, device
        for n in nets:
            n.register_forward_pre_hook(self._pre)
            n.register_forward_hook(self._post)

    def reset(self):
        self.total, self.calls = 0.0, 0

    def _pre(self, module, args):
        _sync(self.device)
        self._t0 = time.perf_counter()

    def _post(self, module, args, out):
        _sync(self.device)
        self.total += time.perf_counter() - self._t0
        self.calls += 1


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(pred, data, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    out = pred.predict_sliding_window_return_logits(data)
    _sync(device)
    dt = time.perf_counter() - t0
    del out
    return dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--slices", type=int, default=150, help="slices of the volume (default 150, the paper's)")
    ap.add_argument("--size", type=int, default=256, help="in-plane size (default 256, the paper's)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="torch intra-op threads for every network (default: torch's current)")
    ap.add_argument("--step", type=float, default=0.5, help="nnU-Net tile step size (default 0.5)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per setting; the median is reported")
    ap.add_argument("--mirroring", choices=("both", "on", "off"), default="both")
    ap.add_argument("--archs", default="stock,monet", help="comma list of stock, monet, monet_fulldepth")
    ap.add_argument("--warmup-slices", type=int, default=2, help="slices of the untimed warm-up run (0: none)")
    ap.add_argument("--engines", default="nnunet,slices",
                    help="comma list: nnunet (nnU-Net's sliding window), nnunet_compile (the same with "
                         "nnUNet_compile=1: torch.compile), slices (nnunet-ext predict-slices), slices:N (the same "
                         "with N slices per forward)")
    ap.add_argument("--slices-per-forward", type=int, default=None,
                    help="slices per forward of the slices engine (default: its memory rule, -batch_mb)")
    ap.add_argument("--batch-mb", type=float, default=None, help="memory budget of the slices engine (MB)")
    ap.add_argument("--device", default="cpu", help="cpu (the benchmark) or cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the raw timings here")
    args = ap.parse_args(argv)

    if args.slices < 1 or args.size < 8 or args.repeats < 1 or not 0 < args.step <= 1:
        raise SystemExit("--slices >= 1, --size >= 8, --repeats >= 1 and 0 < --step <= 1 are required")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    mirrorings = {"both": [False, True], "on": [True], "off": [False]}[args.mirroring]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]

    plans = make_2d_plans(args.size)
    nets = build_networks(plans, archs)
    torch.manual_seed(args.seed)
    data = torch.randn(1, args.slices, args.size, args.size)
    load0 = os.getloadavg()
    print(f"# MoNet vs stock nnU-Net 2d, sliding-window prediction of 1 x {args.slices} x {args.size} x {args.size}")
    print(f"# device {device} | torch {torch.__version__} | threads {torch.get_num_threads()} | step {args.step} | "
          f"patch {plans['configurations']['2d']['patch_size']} | stock stages "
          f"{plans['configurations']['2d']['architecture']['arch_kwargs']['n_stages']} | "
          f"cpu {platform.processor() or platform.machine()} x{os.cpu_count()} | load avg before {load0}")
    print(f"# command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    params = {a: sum(p.numel() for p in n.parameters()) for a, n in nets.items()}
    plain = {a: copy.deepcopy(n) for a, n in nets.items()} if "nnunet_compile" in engines else {}  # no hooks
    preds = {(e, a, m): make_predictor(plain[a] if e == "nnunet_compile" else nets[a], plans, args.step, m, device,
                                       e, args.slices_per_forward, args.batch_mb)
             for e in engines for a in archs for m in mirrorings}
    patch = plans["configurations"]["2d"]["patch_size"]
    for (e, a, m), pred in preds.items():
        if e.startswith("slices") and m == mirrorings[0]:
            print(f"# engine {e}, {a}: {pred.slices_per_forward(patch, args.slices)} slices per forward "
                  f"(activation estimate {pred.activation_bytes_per_slice(patch) / 2 ** 20:.0f} MB per slice)")
    clock = ForwardClock(nets.values(), device)

    if args.warmup_slices > 0:
        warm = data[:, : args.warmup_slices]
        for key, pred in preds.items():
            t = time_once(pred, warm, device)
            print(f"# warm-up {key[0]} {key[1]} mirroring={'on' if key[2] else 'off'}: {t:.1f} s "
                  f"({args.warmup_slices} slices{', incl. compilation' if key[0] == 'nnunet_compile' else ''})",
                  flush=True)
    times: Dict[tuple, List[float]] = {k: [] for k in preds}
    fwd: Dict[tuple, List[float]] = {k: [] for k in preds}
    calls: Dict[tuple, int] = {}
    for r in range(args.repeats):
        for key, pred in preds.items():
            clock.reset()
            t = time_once(pred, data, device)
            times[key].append(t)
            fwd[key].append(clock.total)
            calls[key] = clock.calls
            print(f"  run {r + 1}/{args.repeats} {key[0]:>7s} {key[1]:>16s} mirroring={'on ' if key[2] else 'off'} "
                  + (f"{t:9.2f} s (compiled: not hooked)" if key[0] == "nnunet_compile" else
                     f"{t:9.2f} s (network {100 * clock.total / t:.0f} %, {clock.calls} forwards)"), flush=True)
    load1 = os.getloadavg()

    print()
    print("| engine | network | parameters | mirroring | median (s) | min (s) | ms / slice | network forward share | "
          "forwards | runs (s) |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---|")
    for (e, a, m), ts in times.items():
        med = statistics.median(ts)
        share = statistics.median([f / t for f, t in zip(fwd[(e, a, m)], ts)])
        share_s = "n/a" if e == "nnunet_compile" else f"{100 * share:.0f} %"
        calls_s = "n/a" if e == "nnunet_compile" else str(calls[(e, a, m)])
        print(f"| {e} | {a} | {params[a]:,} | {'on' if m else 'off'} | {med:.2f} | {min(ts):.2f} | "
              f"{1000 * med / args.slices:.1f} | {share_s} | {calls_s} | "
              f"{', '.join(f'{t:.2f}' for t in ts)} |")
    print()
    ratios = {}
    med = {k: statistics.median(v) for k, v in times.items()}
    for e in engines:
        if "stock" not in archs:
            break
        for a in archs:
            if a == "stock":
                continue
            for m in mirrorings:
                ratio = med[(e, "stock", m)] / med[(e, a, m)]
                ratios[f"{e}/{a}/mirroring_{'on' if m else 'off'}"] = ratio
                print(f"speed-up {a} vs stock 2d, engine {e}, mirroring {'on ' if m else 'off'}: {ratio:.2f}x "
                      f"(median stock / median {a})")
    for e in (e for e in engines if e not in ("nnunet", "nnunet_compile") and "nnunet" in engines):
        for a in archs:
            for m in mirrorings:
                ratio = med[("nnunet", a, m)] / med[(e, a, m)]
                ratios[f"{e}_vs_nnunet/{a}/mirroring_{'on' if m else 'off'}"] = ratio
                print(f"engine {e} vs nnunet, {a}, mirroring {'on ' if m else 'off'}: {ratio:.2f}x")
        for a in (a for a in archs if a != "stock" and "stock" in archs):
            for m in mirrorings:
                ratio = med[("nnunet", "stock", m)] / med[(e, a, m)]
                ratios[f"{e}_{a}_vs_nnunet_stock/mirroring_{'on' if m else 'off'}"] = ratio
                print(f"speed-up {a} (engine {e}) vs stock 2d (engine nnunet), mirroring "
                      f"{'on ' if m else 'off'}: {ratio:.2f}x")
    print(f"# load avg after {load1}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "params": params, "load_before": load0, "load_after": load1,
                       "times": {f"{e}/{a}/mirroring_{'on' if m else 'off'}": ts for (e, a, m), ts in times.items()},
                       "forward_s": {f"{e}/{a}/mirroring_{'on' if m else 'off'}": ts for (e, a, m), ts in fwd.items()},
                       "ratios": ratios}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
