"""One-command GPU check of the planner: every architecture on pancreas-like plans made at 8 and 24 GB, trained.

    bash benchmarks/gpu_check.sh                     # on a CUDA machine: writes docs/gpu.md (<= 8 min on an H100)
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu.md --archs plain_unet monet   # tiny, on the CPU

For each architecture (names that build the same network are measured once) and each GPU-memory target, the
configuration is what ``nnunet-ext plan`` makes for an MSD Task07-like dataset (median 96x512x512 at 2.5x0.8x0.8
mm, 282 cases; :func:`calibrate_planner.plan_configuration`), 3d_fullres by default. The plans name the
architecture, so the stock ``nnUNetTrainer`` builds it and its own ``train_step`` runs (AMP on CUDA, nnU-Net's SGD,
Dice + CE with deep supervision): ``nnunet_ext.benchmark.profile.measure_trainer``, in this process, one architecture after
the other. Figures: median step time, ``torch.cuda.max_memory_allocated`` over the step (minus what was allocated
before) against the planner's estimate (:func:`nnunet_ext.plans.planner.training_memory`, ``gpu_gb``) and the
target, achieved TFLOP/s (3 x forward FLOPs x batch / step time) against stock nnU-Net's plan at the same target.
``--time-budget`` stops before a measurement that would start after it (the rest is listed as not measured).

``--dry-run``: CPU, a tiny dataset (median 16x32x32), one warm-up and one timed step: checks the script end to
end (memory is then the peak-RSS rise, and the figures mean nothing).
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibrate_planner  # noqa: E402  (PANCREAS, planning_dataset, plan_configuration)

TINY = {"spacing": (2.5, 0.8, 0.8), "median_shape": (16, 32, 32), "num_training": 4}
STOCK = "stock nnU-Net"


def unique_archs(archs):
    from nnunet_ext.benchmark.memory_check import same_network_groups

    return [g[0] for g in same_network_groups(archs)]


def _plans_for(conf: dict, configuration: str) -> tuple:
    from nnunet_ext.plans.synth import explicit_plans

    dim = len(conf["patch_size"])
    plans, dataset_json, name = explicit_plans(conf["patch_size"], conf["batch_size"], conf["spacing"],
                                               configuration=configuration)
    plans["configurations"][name] = {**plans["configurations"][name], **conf, "data_identifier": "x"}
    if dim == 3:
        plans["original_median_spacing_after_transp"] = list(conf["spacing"])
    return plans, dataset_json


def measure(arch: str, conf: dict, configuration: str, device: str, warmup: int, repeats: int) -> dict:
    from nnunet_ext.benchmark.profile import measure_trainer
    from nnunet_ext.plans.planner import training_memory

    plans, dataset_json = _plans_for(conf, configuration)
    kw = conf["architecture"]["arch_kwargs"]
    est = training_memory(arch, kw, conf["patch_size"], conf["batch_size"], 1, len(dataset_json["labels"]))
    res = measure_trainer(dict(trainer="nnUNetTrainer", plans=plans, dataset_json=dataset_json,
                               configuration=configuration, device=device, warmup=warmup, repeats=repeats))
    res["estimate_gb"] = est["gpu_gb"]
    res["peak_gb"] = res["peak_mib"] * 2 ** 20 / 1e9
    res["tflops"] = 3 * res["flops"] * conf["batch_size"] / (res["train_ms"] / 1000) / 1e12
    return res


def run(archs, targets, configuration: str, device: str, warmup: int, repeats: int, like: dict,
        time_budget: float, log=print) -> list:
    import torch
    from nnunet_ext.plans.planner import ArchitecturePlanner, PlanningError

    dim = 2 if configuration == "2d" else 3
    did = calibrate_planner.planning_dataset()
    t0 = time.time()
    rows = []
    for gb in targets:
        for arch in [STOCK] + list(archs):
            row = {"arch": arch, "target": gb}
            rows.append(row)
            if time.time() - t0 > time_budget:
                row["error"] = "not measured (time budget)"
                continue
            try:
                # stock: plain_unet at kappa = 1 is nnU-Net's ExperimentPlanner (tested), on the meta device
                planner = ArchitecturePlanner(did, gb, arch="plain_unet" if arch == STOCK else arch)
                conf = calibrate_planner.plan_configuration(planner, dim, like)
            except PlanningError as e:
                row["error"] = f"no plan: {e}"
                continue
            row.update(patch=conf["patch_size"], batch=conf["batch_size"])
            try:
                row.update(measure("plain_unet" if arch == STOCK else arch, conf, configuration, device, warmup,
                                   repeats))
            except torch.cuda.OutOfMemoryError:
                row["error"] = "CUDA out of memory"
            except Exception as e:  # reported in the table; the others go on
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
            finally:
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
            log(f"{arch} @ {gb:g} GB: " + (row.get("error") or
                f"{row['train_ms']:.0f} ms, peak {row['peak_gb']:.2f} GB, est {row['estimate_gb']:.2f} GB"))
    return rows


def markdown(rows, device: str, command: str, configuration: str) -> str:
    import torch

    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"CPU ({platform.processor() or 'cpu'})"
    memory = "`torch.cuda.max_memory_allocated` rise" if device.startswith("cuda") else "peak-RSS rise (dry run)"
    stock = {r["target"]: r for r in rows if r["arch"] == STOCK and "tflops" in r}
    out = [f"# GPU check of the planner ({configuration}, pancreas-like plans)", "",
           f"Command: `{command}`  ", f"Device: {name}; torch {torch.__version__}; "
           f"{datetime.date.today().isoformat()}. Memory: {memory}, in GB of 1e9 bytes.", "",
           "| architecture | target (GB) | patch | batch | step (ms, AMP) | peak (GB) | estimate (GB) | peak / est. "
           "| peak / target | TFLOP/s | × stock |", "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        head = f"| {r['arch'] if r['arch'] == STOCK else '`' + r['arch'] + '`'} | {r['target']:g} |"
        if "error" in r:
            patch = "x".join(map(str, r["patch"])) if "patch" in r else "-"
            out.append(head + f" {patch} | {r.get('batch', '-')} | {r['error']} | | | | | | |")
            continue
        s = stock.get(r["target"])
        vs = f"{r['tflops'] / s['tflops']:.2f}" if s else "-"
        out.append(head + f" {'x'.join(map(str, r['patch']))} | {r['batch']} | {r['train_ms']:.0f} | "
                   f"{r['peak_gb']:.2f} | {r['estimate_gb']:.2f} | {r['peak_gb'] / r['estimate_gb']:.2f} | "
                   f"{r['peak_gb'] / r['target']:.2f} | {r['tflops']:.1f} | {vs} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=None, help="architectures (default: every registered network)")
    ap.add_argument("--targets", nargs="+", type=float, default=[8, 24])
    ap.add_argument("-c", "--configuration", default="3d_fullres", choices=["2d", "3d_fullres"])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "gpu.md"))
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--time-budget", type=float, default=420, help="seconds after which no measurement starts")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny dataset, 1 + 1 steps (tests the script)")
    args = ap.parse_args(argv)
    import torch

    from nnunet_ext.architectures import list_architectures

    archs = unique_archs(args.archs or list_architectures())
    if args.dry_run:
        device, like, warmup, repeats = "cpu", TINY, 1, 1
    else:
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device (use --dry-run to test the script on the CPU)", file=sys.stderr)
            return 2
        device, like, warmup, repeats = "cuda", calibrate_planner.PANCREAS, args.warmup, args.repeats
    rows = run(archs, args.targets, args.configuration, device, warmup, repeats, like, args.time_budget,
               log=lambda s: print(s, file=sys.stderr, flush=True))
    command = "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = markdown(rows, device, command, args.configuration)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
