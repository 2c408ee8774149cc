"""Model figures of one trainer for ``nnunet-ext benchmark``: parameters, forward FLOPs (the one FLOP counter of
nnunet-ext), training-step time, peak memory and sliding-window inference time, each trainer measured in a fresh
subprocess (per-model peak RSS). Definitions: the docstring of :mod:`nnunet_ext.benchmark.cli` and docs/benchmarks.md.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from nnunet_ext.architectures import forward_flops
from nnunet_ext.lookup import build_network, find_trainer_class, quiet


def proc_status_kib(key: str) -> Optional[int]:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``); None where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_now_kib() -> Optional[int]:
    """The process's resident set size now (KiB); None where there is no /proc."""
    return proc_status_kib("VmRSS")


def rss_peak_kib() -> int:
    """The process's peak resident set size (KiB) since it started or since :func:`reset_rss_peak`."""
    peak = proc_status_kib("VmHWM")
    if peak is not None:
        return peak
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def reset_rss_peak() -> bool:
    """Reset the peak RSS that :func:`rss_peak_kib` reads (Linux ``/proc/self/clear_refs``); False if it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_targets(outputs, batch: int, num_classes: int, device):
    """Random integer label maps matching the network's outputs (a list with deep supervision)."""
    import torch

    g = torch.Generator().manual_seed(0)
    if isinstance(outputs, (list, tuple)):
        return [torch.randint(0, num_classes, (batch, 1, *o.shape[2:]), generator=g).float().to(device)
                for o in outputs]
    return torch.randint(0, num_classes, (batch, 1, *outputs.shape[2:]), generator=g).float().to(device)


def meta_outputs(net_meta, in_shape):
    """The outputs (shapes only) of a network on the meta device for an input of ``in_shape``."""
    import torch

    with torch.no_grad():
        out = net_meta(torch.zeros(tuple(in_shape), device="meta"))
    return out


def _trainer_step_fn(cls, plans, configuration, dataset_json, device, in_ch, out_ch):
    """(step(batch) -> None, network, description) using the trainer's own network/optimizer/loss/train_step."""
    pl = copy.deepcopy(plans)
    pl["continue_training"] = False
    with quiet():
        trainer = cls(plans=pl, configuration=configuration, fold=0, dataset_json=dataset_json, device=device)
        trainer.num_input_channels = in_ch
        trainer.network = build_network(type(trainer), trainer.plans_manager, trainer.configuration_manager, in_ch,
                                        trainer.label_manager.num_segmentation_heads,
                                        trainer.enable_deep_supervision).to(trainer.device)
        trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
        trainer.loss = trainer._build_loss()
    trainer.network.train()

    def step(batch):
        trainer.train_step(batch)

    return step, trainer.network, "trainer.train_step"


def generic_step_fn(cls, pm, cm, device, in_ch, out_ch):
    """nnU-Net's recipe around the trainer's network: DC_and_CE in DeepSupervisionWrapper, SGD, AMP on CUDA."""
    import torch
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    net = build_network(cls, pm, cm, in_ch, out_ch, True).to(device)
    net.train()
    loss = DC_and_CE_loss({"batch_dice": cm.batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                          weight_ce=1, weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    n_ds = len(cm.pool_op_kernel_sizes) - 1
    w = np.array([1 / (2 ** i) for i in range(n_ds)])
    w[-1] = 0
    loss = DeepSupervisionWrapper(loss, w / w.sum())
    opt = torch.optim.SGD(net.parameters(), 1e-2, weight_decay=3e-5, momentum=0.99, nesterov=True)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None

    def step(batch):
        x, t = batch["data"].to(device), batch["target"]
        opt.zero_grad(set_to_none=True)
        ctx = torch.autocast("cuda", enabled=True) if device.type == "cuda" else contextlib.nullcontext()
        with ctx:
            out = net(x)
            if not isinstance(out, (list, tuple)):
                out, t = [out], [t if not isinstance(t, list) else t[0]]
            l = loss(out, t)
        if scaler is not None:
            scaler.scale(l).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
            scaler.step(opt)
            scaler.update()
        else:
            l.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
            opt.step()
        float(l.detach())

    return step, net, "generic DC_and_CE+DS"


def measure_trainer(spec: dict) -> dict:
    """Model figures of one trainer. ``spec``: trainer, plans, dataset_json, configuration, device, warmup, repeats,
    volume_shape (or None), mirroring, tile_step. Returns a dict of numbers (and notes on what fell back)."""
    import torch
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    if not os.environ.get("nnUNet_compile"):
        os.environ["nnUNet_compile"] = "f"
    name, configuration = spec["trainer"], spec["configuration"]
    device = torch.device(spec.get("device", "cpu"))
    cls = find_trainer_class(name)
    plans, dataset_json = spec["plans"], spec["dataset_json"]
    pm = PlansManager(copy.deepcopy(plans))
    cm = pm.get_configuration(configuration)
    in_ch = determine_num_input_channels(pm, cm, dataset_json)
    out_ch = pm.get_label_manager(dataset_json).num_segmentation_heads
    patch, batch = [int(p) for p in cm.patch_size], int(cm.batch_size)
    res: Dict[str, Any] = {"trainer": name, "configuration": configuration, "patch_size": patch, "batch_size": batch,
                           "device": str(device), "notes": []}

    # ---- parameters and FLOPs on the meta device (no memory)
    torch.manual_seed(0)
    try:
        with torch.device("meta"):
            net_meta = build_network(cls, pm, cm, in_ch, out_ch, False)
    except Exception as e:  # some constructions need real tensors
        res["notes"].append(f"meta construction failed ({type(e).__name__}); built on CPU then moved")
        net_meta = build_network(cls, pm, cm, in_ch, out_ch, False).to("meta")
    from nnunet_ext.architectures import count_parameters

    res["params"] = count_parameters(net_meta)
    try:
        res["flops"] = forward_flops(net_meta, (1, in_ch, *patch), "meta")
    except Exception as e:
        res["notes"].append(f"FLOPs on meta failed ({type(e).__name__}: {str(e)[:80]}); counted on CPU")
        net_cpu = build_network(cls, pm, cm, in_ch, out_ch, False).eval()
        res["flops"] = forward_flops(net_cpu, (1, in_ch, *patch), "cpu")
        del net_cpu
    # output shapes with deep supervision (for the targets)
    with torch.device("meta"):
        try:
            ds_meta = build_network(cls, pm, cm, in_ch, out_ch, True)
            out_shapes = meta_outputs(ds_meta, (batch, in_ch, *patch))
        except Exception:
            out_shapes = None
    del net_meta

    # ---- training step time and peak memory
    if spec.get("repeats", 0) > 0:
        import gc

        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base_cuda = torch.cuda.memory_allocated(device)
        else:
            base_rss = rss_now_kib()
            if not reset_rss_peak():
                res["notes"].append("could not reset the peak RSS; memory is the process's peak RSS - RSS before")
        try:
            step, net, how = _trainer_step_fn(cls, plans, configuration, dataset_json, device, in_ch, out_ch)
        except Exception as e:
            res["notes"].append(f"trainer set-up failed ({type(e).__name__}: {str(e)[:80]}); generic step used")
            step, net, how = generic_step_fn(cls, pm, cm, device, in_ch, out_ch)
        res["step"] = how
        g = torch.Generator().manual_seed(1)
        x = torch.randn((batch, in_ch, *patch), generator=g).to(device)
        if out_shapes is None:
            with torch.no_grad():
                out_shapes = net(x)
        batch_dict = {"data": x, "target": random_targets(out_shapes, batch, out_ch, device)}
        times = []
        for i in range(int(spec.get("warmup", 1)) + int(spec["repeats"])):
            _sync(device)
            t0 = time.perf_counter()
            step(batch_dict)
            _sync(device)
            if i >= int(spec.get("warmup", 1)):
                times.append(time.perf_counter() - t0)
        res["train_ms"] = float(np.median(times) * 1000)
        res["train_ms_all"] = [t * 1000 for t in times]
        if device.type == "cuda":
            res["peak_mib"] = (torch.cuda.max_memory_allocated(device) - base_cuda) / 2 ** 20
            res["memory_kind"] = "cuda max_memory_allocated"
        else:
            res["peak_mib"] = (rss_peak_kib() - (base_rss or 0)) / 1024
            res["memory_kind"] = "peak RSS rise"
        del step, net, batch_dict, x
        gc.collect()

    # ---- sliding-window inference
    vol = spec.get("volume_shape")
    if vol:
        res["infer_s"], res["volume_shape"], res["mirroring"] = \
            _inference_time(cls, pm, cm, dataset_json, name, device, in_ch, out_ch, vol, spec)
    return res


def _inference_time(cls, pm, cm, dataset_json, name, device, in_ch, out_ch, volume_shape, spec):
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    dim = len(cm.patch_size)
    vol = [int(v) for v in volume_shape]
    if len(vol) != 3 and not (dim == 3 and len(vol) == 3):
        raise ValueError(f"volume shape {vol} must have 3 entries (z y x)")
    mirror = tuple(range(dim)) if spec.get("mirroring", True) else None
    net = build_network(cls, pm, cm, in_ch, out_ch, False).to(device).eval()
    with quiet():
        pred = nnUNetPredictor(tile_step_size=float(spec.get("tile_step", 0.5)), use_gaussian=True,
                               use_mirroring=mirror is not None, perform_everything_on_device=True, device=device,
                               verbose=False, allow_tqdm=False)
        pred.manual_initialization(net, pm, cm, None, dataset_json, name, mirror)
    g = torch.Generator().manual_seed(2)
    warm = torch.randn((in_ch, *([1] + list(cm.patch_size) if dim == 2 else cm.patch_size)), generator=g)
    with quiet():
        pred.predict_sliding_window_return_logits(warm)
    data = torch.randn((in_ch, *vol), generator=g)
    _sync(device)
    t0 = time.perf_counter()
    with quiet():
        pred.predict_sliding_window_return_logits(data)
    _sync(device)
    return time.perf_counter() - t0, vol, mirror is not None


def _worker_main(spec_file: str, result_file: str) -> int:
    """Entry of the per-trainer subprocess: measure, write JSON (an ``error`` entry on failure)."""
    spec = json.loads(Path(spec_file).read_text())
    with tempfile.TemporaryDirectory(prefix="nnunet_ext_bench_") as tmp:
        os.environ["nnUNet_results"] = tmp  # nnUNetTrainer.__init__ writes its log folder there
        try:
            res = measure_trainer(spec)
        except Exception as e:  # reported in the table, does not stop the others
            import traceback

            res = {"trainer": spec["trainer"], "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                   if str(e) else type(e).__name__, "traceback": traceback.format_exc()[-3000:]}
    Path(result_file).write_text(json.dumps(res))
    return 0


def run_model_figures(trainers: Sequence[str], plans: dict, dataset_json: dict, configuration: str, *,
                      device: str = "cpu", warmup: int = 2, repeats: int = 5, volume_shape=None,
                      mirroring: bool = True, tile_step: float = 0.5, isolate: bool = True,
                      timeout: Optional[float] = None, log=print) -> List[dict]:
    """Model figures of every trainer; with ``isolate`` each one runs in a fresh subprocess (per-model peak RSS)."""
    results = []
    for name in trainers:
        spec = dict(trainer=name, plans=plans, dataset_json=dataset_json, configuration=configuration,
                    device=device, warmup=warmup, repeats=repeats, volume_shape=volume_shape, mirroring=mirroring,
                    tile_step=tile_step)
        t0 = time.perf_counter()
        if isolate:
            with tempfile.TemporaryDirectory(prefix="nnunet_ext_bench_") as tmp:
                sf, rf = Path(tmp) / "spec.json", Path(tmp) / "result.json"
                sf.write_text(json.dumps(spec))
                cmd = [sys.executable, "-c", "import sys; from nnunet_ext.benchmark.profile import _worker_main; "
                       "sys.exit(_worker_main(sys.argv[1], sys.argv[2]))", str(sf), str(rf)]
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
                    if rf.is_file():
                        res = json.loads(rf.read_text())
                    else:
                        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                        res = {"trainer": name, "error": f"worker exited {proc.returncode}: {tail[0][:200]}"}
                except subprocess.TimeoutExpired:
                    res = {"trainer": name, "error": f"timed out after {timeout} s"}
        else:
            with tempfile.TemporaryDirectory(prefix="nnunet_ext_bench_") as tmp:
                old = os.environ.get("nnUNet_results")
                os.environ["nnUNet_results"] = tmp
                try:
                    res = measure_trainer(spec)
                finally:
                    if old is None:
                        os.environ.pop("nnUNet_results", None)
                    else:
                        os.environ["nnUNet_results"] = old
        res["wall_s"] = time.perf_counter() - t0
        log(f"  {name}: " + (f"ERROR {res['error']}" if "error" in res else
                             f"{res['params'] / 1e6:.2f} M params, {res['flops'] / 1e9:.2f} GFLOPs"
                             + (f", step {res['train_ms']:.0f} ms" if "train_ms" in res else "")
                             + (f", peak {res['peak_mib']:.0f} MiB" if "peak_mib" in res else "")
                             + (f", infer {res['infer_s']:.1f} s" if "infer_s" in res else "")
                             + f" ({res['wall_s']:.0f} s)"))
        results.append(res)
    return results
