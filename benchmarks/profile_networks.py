"""Hardware-efficiency profile of every family's default network against stock nnU-Net's (issue 15).

For each trainer's network, built by the trainer's own ``build_network_architecture`` from the SAME synthesised
nnU-Net plans (``nnunet_ext.plans.synth.explicit_plans``: stock nnU-Net's topology for the patch), on the CPU:

* **train step**: forward + backward + SGD step the way nnU-Net's ``train_step`` does it (deep supervision,
  DC_and_CE in DeepSupervisionWrapper, SGD momentum 0.99 nesterov, gradient clipping 12; fp32 on the CPU):
  ``nnunet_ext.benchmark.profile.generic_step_fn``; batch = the plans' batch size;
* **inference forward**: eval mode, ``torch.no_grad()``, one patch (nnU-Net's sliding window runs batch 1);
* **GFLOP/s**: forward FLOPs (``nnunet_ext.architectures.forward_flops``, the one FLOP counter of nnunet-ext;
  1 multiply-add = 2 FLOPs) per second; for the train step the forward FLOPs of the batch divided by the step
  time (the issue's definition: "forward GFLOPs per second of a training step"); ``x stock`` = that rate over
  stock nnU-Net's (``nnUNetTrainer``, PlainConvUNet) in the same run;
* **time per operator type** (``torch.profiler``, one extra step each): convolutions by kind (dense, 1x1,
  depth-wise, depth-wise dilated, dilated, transposed; forward and backward), normalisation, activation, other
  (pooling, element-wise, loss, optimiser, copies), as shares of the profiled step.

Repeats are interleaved across networks and paths (round-robin), medians reported. ``--reference`` adds every
network's reference path (``architectures/_fast.py``: the code before the fast paths) as a second row, so
before/after is one command in one run.

Example (the table of docs/benchmarks.md "Hardware efficiency")::

    OMP_NUM_THREADS=1 python benchmarks/profile_networks.py --threads 1 --dims 2 3 --reference --repeats 3 \\
        --json profile.json

GPU (not run in the session that wrote this; pancreas-scale 3d_fullres patch, AMP as nnU-Net, with the depth-wise
channels-last switch on CUDA as well, so that ``fast`` vs ``reference`` is the layout question on cuDNN)::

    nnUNet_ext_channels_last_devices=cpu,cuda python benchmarks/profile_networks.py --device cuda --dims 3 \
        --patch-3d 40 224 224 --batch-3d 2 --reference --repeats 10 --json profile_gpu.json
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import sys
import time
from collections import defaultdict
from typing import Dict, List

import torch

from nnunet_ext.architectures import _fast
from nnunet_ext.plans.synth import explicit_plans
from nnunet_ext.architectures import forward_flops
from nnunet_ext.benchmark.profile import generic_step_fn, random_targets
from nnunet_ext.lookup import STOCK_TRAINER, build_network, find_trainer_class, quiet

#: the default trainer of every family (DMC-Net, ResDSN, DLKUNet, MoNet, two-stage U-Net) and stock nnU-Net
DEFAULT_ARCHS = [STOCK_TRAINER, "nnUNetTrainerDMCNet", "nnUNetTrainerResDSN", "nnUNetTrainerDLKUNetS",
                 "nnUNetTrainerMoNet", "nnUNetTrainerTwoStageUNet"]
#: the issue's sizes (docs/benchmarks.md's CPU tables): 2d patch 128x128 batch 2, 3d patch 16x64x64 batch 1
DEFAULT_PATCH = {2: (128, 128), 3: (16, 64, 64)}
DEFAULT_BATCH = {2: 2, 3: 1}
CATEGORIES = ("conv dense", "conv 1x1", "conv depth-wise", "conv depth-wise dilated", "conv dilated",
              "conv transposed", "norm", "activation", "other")
_NORM = {"aten::instance_norm", "aten::batch_norm", "aten::native_batch_norm_backward", "aten::group_norm",
         "aten::layer_norm"}
_ACT = {f"aten::{n}{s}" for n in ("relu", "leaky_relu", "elu", "sigmoid", "gelu") for s in ("", "_")} | {
    "aten::threshold_backward", "aten::leaky_relu_backward", "aten::elu_backward", "aten::sigmoid_backward",
    "_ELUBackward", "_ELU"}
_CONV = {"aten::convolution", "aten::convolution_backward"}


def conv_kind(evt) -> str:
    """Kind of a profiled ``aten::convolution`` / ``aten::convolution_backward`` from its recorded arguments."""
    ins, shapes = list(getattr(evt, "concrete_inputs", []) or []), evt.input_shapes
    back = evt.name == "aten::convolution_backward"
    off = 4 if back else 3        # (grad_out,) input, weight, bias[_sizes], stride, padding, dilation, transposed, ...
    try:
        dilation, transposed, groups = ins[off + 2], ins[off + 3], int(ins[off + 5])
        weight = shapes[2 if back else 1]
    except (IndexError, TypeError, ValueError):
        return "conv dense"
    if transposed:
        return "conv transposed"
    dilated = any(int(d) > 1 for d in dilation)
    if groups > 1 and len(weight) > 1 and weight[1] == 1:
        return "conv depth-wise dilated" if dilated else "conv depth-wise"
    if dilated:
        return "conv dilated"
    return "conv 1x1" if all(int(k) == 1 for k in weight[2:]) else "conv dense"


def _category(evt):
    if evt.name in _CONV:
        return conv_kind(evt)
    if evt.name in _NORM:
        return "norm"
    if evt.name in _ACT:
        return "activation"
    return None


def breakdown(fn) -> Dict[str, float]:
    """Shares of ``fn()``'s profiled CPU time per operator category (outermost classified op counts, no nesting)."""
    from torch.profiler import ProfilerActivity, profile

    with quiet(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    events = prof.events()
    total, per = 0.0, defaultdict(float)
    for e in events:
        if e.cpu_parent is None:
            total += e.cpu_time_total
        cat = _category(e)
        if cat is None:
            continue
        p, nested = e.cpu_parent, False
        while p is not None:
            if _category(p) is not None:
                nested = True
                break
            p = p.cpu_parent
        if not nested:
            per[cat] += e.cpu_time_total
    per["other"] = max(0.0, total - sum(per.values()))
    return {c: per.get(c, 0.0) / total if total else 0.0 for c in CATEGORIES}


def _setup(name: str, dim: int, patch, batch: int, device: str = "cpu"):
    plans, dj, cfg = explicit_plans(patch, batch_size=batch)
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(copy.deepcopy(plans))
    cm = pm.get_configuration(cfg)
    cls = find_trainer_class(name)
    in_ch, out_ch = 1, pm.get_label_manager(dj).num_segmentation_heads
    torch.manual_seed(0)
    with torch.device("meta"):
        flops = forward_flops(build_network(cls, pm, cm, in_ch, out_ch, False), (1, in_ch, *patch), "meta")
    dev = torch.device(device)
    step, net, _ = generic_step_fn(cls, pm, cm, dev, in_ch, out_ch)
    g = torch.Generator().manual_seed(1)
    x = torch.randn((batch, in_ch, *patch), generator=g).to(dev)
    with torch.no_grad():
        outs = net(x)
    batch_dict = {"data": x, "target": random_targets(outs, batch, out_ch, dev)}
    infer_net = build_network(cls, pm, cm, in_ch, out_ch, False).to(dev)
    infer_net.load_state_dict(net.state_dict())
    infer_net.eval()
    x1 = x[:1].clone()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def train():
        step(batch_dict)   # on CUDA: autocast fp16 + GradScaler, as nnU-Net's train_step
        sync()

    def infer():
        with torch.no_grad(), (torch.autocast("cuda") if dev.type == "cuda" else contextlib.nullcontext()):
            infer_net(x1)
        sync()

    return dict(train=train, infer=infer, flops=flops, batch=batch)


def _timed(fn, reference: bool) -> float:
    with _fast.reference_mode(reference):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def profile(archs: List[str], dims: List[int], repeats: int, reference: bool, patches=None, batches=None,
            log=print, device: str = "cpu") -> List[dict]:
    rows = []
    paths = [False, True] if reference else [False]
    for dim in dims:
        patch, batch = tuple((patches or {}).get(dim, DEFAULT_PATCH[dim])), (batches or {}).get(dim, DEFAULT_BATCH[dim])
        nets = {a: _setup(a, dim, patch, batch, device) for a in archs}
        times = {(a, r, k): [] for a in archs for r in paths for k in ("train", "infer")}
        for a in archs:                                   # warm-up: one of each
            for r in paths:
                for k in ("train", "infer"):
                    _timed(nets[a][k], r)
        for i in range(repeats):                          # interleaved across networks and paths
            for a in archs:
                for r in paths:
                    for k in ("train", "infer"):
                        times[(a, r, k)].append(_timed(nets[a][k], r))
            log(f"  {dim}d repeat {i + 1}/{repeats} done")
        for a in archs:
            for r in paths:
                n = nets[a]
                with _fast.reference_mode(r):   # CPU operator times (on CUDA: the host side, not kept)
                    br_t, br_i = (breakdown(n["train"]), breakdown(n["infer"])) if device == "cpu" else \
                        ({c: float("nan") for c in CATEGORIES},) * 2
                t, f = statistics.median(times[(a, r, "train")]), statistics.median(times[(a, r, "infer")])
                rows.append(dict(arch=a, dim=dim, patch=list(patch), batch=n["batch"], path="reference" if r else "fast",
                                 gflops=n["flops"] / 1e9, train_ms=t * 1e3, infer_ms=f * 1e3,
                                 train_gflops_s=n["flops"] * n["batch"] / t / 1e9, infer_gflops_s=n["flops"] / f / 1e9,
                                 train_breakdown=br_t, infer_breakdown=br_i))
        del nets
    for r in rows:   # ratios to stock in the same run (stock has one path: nothing of ours runs in it)
        st = next((s for s in rows if s["arch"] == STOCK_TRAINER and s["dim"] == r["dim"]
                   and s["path"] == "fast"), None)
        if st:
            r["train_x_stock"] = r["train_gflops_s"] / st["train_gflops_s"]
            r["infer_x_stock"] = r["infer_gflops_s"] / st["infer_gflops_s"]
    return rows


def _short(a: str) -> str:
    return "stock nnU-Net" if a == STOCK_TRAINER else a.replace("nnUNetTrainer", "")


def table(rows: List[dict]) -> str:
    out = ["| network | dim | path | GFLOPs (fwd, 1 patch) | train step ms | train GFLOP/s | x stock | "
           "inference ms | inference GFLOP/s | x stock |", "|---|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        out.append(f"| {_short(r['arch'])} | {r['dim']}d | {r['path']} | {r['gflops']:.2f} | {r['train_ms']:.0f} | "
                   f"{r['train_gflops_s']:.1f} | {r.get('train_x_stock', float('nan')):.2f} | {r['infer_ms']:.0f} | "
                   f"{r['infer_gflops_s']:.1f} | {r.get('infer_x_stock', float('nan')):.2f} |")
    out += ["", "Train-step time per operator type (% of the profiled step):", "",
            "| network | dim | path | " + " | ".join(CATEGORIES) + " |", "|---|---|---|" + "--:|" * len(CATEGORIES)]
    for r in rows:
        out.append(f"| {_short(r['arch'])} | {r['dim']}d | {r['path']} | "
                   + " | ".join(f"{100 * r['train_breakdown'][c]:.0f}" for c in CATEGORIES) + " |")
    out += ["", "Inference forward time per operator type (%):", "",
            "| network | dim | path | " + " | ".join(CATEGORIES) + " |", "|---|---|---|" + "--:|" * len(CATEGORIES)]
    for r in rows:
        out.append(f"| {_short(r['arch'])} | {r['dim']}d | {r['path']} | "
                   + " | ".join(f"{100 * r['infer_breakdown'][c]:.0f}" for c in CATEGORIES) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=DEFAULT_ARCHS, help="trainer names (stock nnUNetTrainer is the "
                    "reference of the ratios; it is added if missing)")
    ap.add_argument("--dims", nargs="+", type=int, default=[2, 3], choices=[2, 3])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--patch-2d", nargs=2, type=int, default=list(DEFAULT_PATCH[2]))
    ap.add_argument("--patch-3d", nargs=3, type=int, default=list(DEFAULT_PATCH[3]))
    ap.add_argument("--batch-2d", type=int, default=DEFAULT_BATCH[2])
    ap.add_argument("--batch-3d", type=int, default=DEFAULT_BATCH[3])
    ap.add_argument("--reference", action="store_true", help="also measure every network's reference path "
                    "(before/after in one run)")
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda: AMP as nnU-Net, no operator "
                    "breakdown; depth-wise channels-last on CUDA only with nnUNet_ext_channels_last_devices=cpu,cuda")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    archs = list(a.archs) if STOCK_TRAINER in a.archs else [STOCK_TRAINER] + list(a.archs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {a.device}", file=sys.stderr)
    rows = profile(archs, a.dims, a.repeats, a.reference, {2: a.patch_2d, 3: a.patch_3d},
                   {2: a.batch_2d, 3: a.batch_3d}, log=lambda m: print(m, file=sys.stderr), device=a.device)
    print(table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(threads=torch.get_num_threads(), torch=torch.__version__, rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
