"""``nnunet-ext benchmark``: model figures and accuracy of our trainers against stock nnU-Net.

Two parts, run by one command (``nnunet-ext benchmark -h``); both write into ``--out DIR`` and print a one-screen
summary:

**Model figures** (skipped with ``--skip-models``), for every trainer of ``-tr`` (default: every trainer of
nnunet-ext and stock ``nnUNetTrainer``), on a dataset's plans (``-d D -c CONFIG [-p PLANS]``, read from
``nnUNet_preprocessed``) or on nnU-Net-like plans built in memory for an explicit ``--patch-size`` (topology from
nnU-Net's own planner function ``get_pool_and_conv_props``, its default features 32·2^s capped at 512 (2d) / 320 (3d),
two convs per stage, instance norm, leaky ReLU):

``params``       trainable parameters of the network the trainer builds (``build_network_architecture`` of the class
                 nnU-Net's ``recursive_find_trainer_class_by_name`` finds, with our ``nnUNet_extTrainer`` set);
``gflops``       FLOPs of one forward pass, batch 1, at the plans' patch, deep supervision off (the deployed
                 network), counted by ``torch.utils.flop_counter.FlopCounterMode`` on the meta device. Convention of
                 torch's counter: a multiply-add is 2 FLOPs (a convolution counts 2·C_in/groups·C_out·prod(k)·output
                 voxels; transposed convolutions and matmuls likewise); bias, normalisation, activations, pooling and
                 interpolation are not counted. Hook-based counters (thop/ptflops) over-count nnU-Net's decoders.
``train_ms``     median over ``--repeats`` steps (after ``--warmup`` steps) of one training step at the plans' batch
                 size: the trainer's own ``train_step`` with the network, optimizer (``configure_optimizers``) and
                 loss (``_build_loss``: Dice+CE in ``DeepSupervisionWrapper``) it builds itself, including autocast +
                 GradScaler on CUDA and gradient clipping. If a trainer cannot be set up that way the step is
                 nnU-Net's recipe rebuilt around its network (``DC_and_CE_loss`` in ``DeepSupervisionWrapper``,
                 SGD momentum 0.99 nesterov, AMP on CUDA); the ``step`` column says which was used.
``peak_mib``     CUDA: ``torch.cuda.max_memory_allocated`` over network construction and the training steps. CPU: the
                 rise of the process's peak resident set size (Linux ``VmHWM``, reset through
                 ``/proc/self/clear_refs`` before the network is built) over the RSS before it. Every trainer is
                 measured in a fresh subprocess, so these are per model.
``infer_s``      wall time of ``nnUNetPredictor.predict_sliding_window_return_logits`` for one random volume of
                 ``--volume-shape`` (tile step 0.5, Gaussian weighting, mirroring as nnU-Net unless
                 ``--no-mirroring``), after one warm-up call on a patch-sized volume.

**Accuracy** (when ``--cv`` or ``--pred`` is given): per-case Dice, HD95 and NSD (:mod:`nnunet_ext.metrics`) of each
trainer's 5-fold cross-validation (``fold_X/validation`` in ``nnUNet_results``) or of given prediction folders
(``--pred NAME=FOLDER ... --labels FOLDER``); per class mean ± std (HD95 without the NaN cases of "exactly one mask
empty", their count reported); a paired two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, default
options) of each trainer against ``--reference`` per class and metric on the cases both have, pairs with a NaN
dropped, the number of pairs reported. Missing folds are reported in the table and on stdout.

Outputs: ``benchmark.md`` (a table in the spirit of DMC-Net's Table 3), ``benchmark.csv`` (one row per trainer),
``per_case.csv``, ``benchmark.json`` (everything), ``boxplot_dice.png`` and ``boxplot_hd95.png``.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunet_ext.errors import UserError

STOCK_TRAINER = "nnUNetTrainer"
METRICS = ("Dice", "HD95", "NSD")
#: labels of the in-memory dataset.json used with --patch-size (pancreas-like: background, pancreas, tumour)
DEFAULT_LABELS = {"background": 0, "pancreas": 1, "tumour": 2}

_user_error = UserError  # one-line error, exit status 2 (nnunet_ext.errors)


# ================================================================================================ plans
def explicit_plans(patch_size: Sequence[int], batch_size: int = 2, spacing: Optional[Sequence[float]] = None,
                   num_input_channels: int = 1, labels: Optional[Dict[str, int]] = None,
                   configuration: Optional[str] = None) -> Tuple[dict, dict, str]:
    """nnU-Net-like plans and dataset.json (in memory) for one explicit patch size.

    The topology (strides, kernel sizes, number of stages) comes from nnU-Net's planner function
    ``get_pool_and_conv_props`` for ``spacing`` (default isotropic 1 mm); features, blocks, norm and nonlinearity are
    the ``ExperimentPlanner`` defaults. Raises ValueError if the planner would change the patch (not divisible).
    Returns (plans, dataset_json, configuration name).
    """
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    patch = [int(p) for p in patch_size]
    dim = len(patch)
    if dim not in (2, 3) or min(patch) < 1:
        raise ValueError(f"patch size {patch} must have 2 or 3 positive entries")
    spacing = [1.0] * dim if spacing is None else [float(s) for s in spacing]
    if len(spacing) != dim:
        raise ValueError(f"spacing {spacing} must have as many entries as the patch size {patch}")
    _, strides, kernels, new_patch, _ = get_pool_and_conv_props(spacing, patch, 4, 999999)
    new_patch = [int(p) for p in new_patch]
    if new_patch != patch:
        raise ValueError(f"patch size {patch} is not divisible by the pooling nnU-Net plans for it; "
                         f"use {new_patch}")
    n_stages = len(strides)
    max_feat = 512 if dim == 2 else 320
    conv = "torch.nn.Conv2d" if dim == 2 else "torch.nn.Conv3d"
    norm = "torch.nn.InstanceNorm2d" if dim == 2 else "torch.nn.InstanceNorm3d"
    configuration = configuration or ("2d" if dim == 2 else "3d_fullres")
    labels = dict(labels or DEFAULT_LABELS)
    cfg = {
        "data_identifier": f"nnUNetPlans_{configuration}", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": int(batch_size), "patch_size": patch, "median_image_size_in_voxels": [2 * p for p in patch],
        "spacing": spacing, "normalization_schemes": ["CTNormalization"] * num_input_channels,
        "use_mask_for_norm": [False] * num_input_channels,
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": n_stages, "features_per_stage": [min(max_feat, 32 * 2 ** i) for i in range(n_stages)],
                "conv_op": conv, "kernel_sizes": [list(k) for k in kernels], "strides": [list(s) for s in strides],
                "n_conv_per_stage": [2] * n_stages, "n_conv_per_stage_decoder": [2] * (n_stages - 1),
                "conv_bias": True, "norm_op": norm, "norm_op_kwargs": {"eps": 1e-5, "affine": True},
                "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                "nonlin_kwargs": {"inplace": True},
            },
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
        "batch_dice": dim == 3,
    }
    plans = {
        "dataset_name": "Dataset999_Benchmark", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": spacing if dim == 3 else [1.0, *spacing],
        "original_median_shape_after_transp": [2 * p for p in patch] if dim == 3 else [16, *[2 * p for p in patch]],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {configuration: cfg}, "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(c): {"max": 1000.0, "mean": 80.0, "median": 80.0, "min": -1000.0, "percentile_00_5": -100.0,
                     "percentile_99_5": 300.0, "std": 60.0} for c in range(num_input_channels)},
    }
    dataset_json = {"channel_names": {str(c): "CT" for c in range(num_input_channels)}, "labels": labels,
                    "numTraining": 0, "file_ending": ".nii.gz"}
    return plans, dataset_json, configuration


def dataset_plans(dataset: str, configuration: str, plans_identifier: str = "nnUNetPlans") -> Tuple[dict, dict, str]:
    """Plans and dataset.json of a preprocessed dataset (``nnUNet_preprocessed``); UserError for what is missing."""
    from nnunetv2.paths import nnUNet_preprocessed

    if not nnUNet_preprocessed.is_set():
        raise _user_error("nnUNet_preprocessed is not set (needed for -d; or use --patch-size)")
    name = _dataset_name(dataset)
    folder = Path(str(nnUNet_preprocessed)) / name
    plans_file, dj_file = folder / f"{plans_identifier}.json", folder / "dataset.json"
    for f in (plans_file, dj_file):
        if not f.is_file():
            raise _user_error(f"missing {f}")
    plans, dataset_json = json.loads(plans_file.read_text()), json.loads(dj_file.read_text())
    if configuration not in plans.get("configurations", {}):
        raise _user_error(f"configuration {configuration!r} not in {plans_file} (has: "
                          f"{', '.join(plans.get('configurations', {}))})")
    return plans, dataset_json, configuration


def _dataset_name(dataset: str) -> str:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        with _quiet():
            return maybe_convert_to_dataset_name(dataset if str(dataset).startswith("Dataset") else int(dataset))
    except (RuntimeError, ValueError) as e:
        raise _user_error(f"dataset {dataset!r} not found in nnUNet_raw/nnUNet_preprocessed/nnUNet_results "
                          f"({str(e).splitlines()[0][:120]})") from None


# ================================================================================================ trainers
@contextlib.contextmanager
def _quiet():
    """Silence nnU-Net's prints (trainer search, 'Using device', citation banner)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def default_trainers() -> List[str]:
    from nnunet_ext import trainers

    return list(trainers.exported_trainers()) + [STOCK_TRAINER]


def find_trainer_class(name: str) -> type:
    """The class nnU-Net's own lookup finds for ``name`` (our ``nnUNet_extTrainer`` registered); UserError if none."""
    from nnunet_ext.cli import register_ext_trainers, trainer_names
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    register_ext_trainers()
    try:
        with _quiet():
            return recursive_find_trainer_class_by_name(name)
    except (RuntimeError, AssertionError):
        raise _user_error(f"unknown trainer {name!r}; trainers of nnunet-ext: {', '.join(trainer_names())} "
                          f"(and stock nnU-Net's, e.g. {STOCK_TRAINER})") from None


def build_network(cls: type, plans_manager, configuration_manager, num_input_channels: int,
                  num_output_channels: int, deep_supervision: bool):
    """``cls.build_network_architecture`` with the signature nnU-Net's ``initialize`` uses (new or old)."""
    import inspect

    if "plans_manager" in inspect.signature(cls.build_network_architecture).parameters:
        return cls.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                              num_output_channels, deep_supervision)
    cm = configuration_manager
    return cls.build_network_architecture(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                          cm.network_arch_init_kwargs_req_import, num_input_channels,
                                          num_output_channels, deep_supervision)


# ================================================================================================ figures
def forward_flops(net, input_shape: Sequence[int], device: str = "meta") -> int:
    """FLOPs of one forward pass of ``net`` for an input of ``input_shape`` (torch's FlopCounterMode convention:
    one multiply-add = 2 FLOPs). ``net`` must live on ``device``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(tuple(input_shape), device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(x)
    return int(fc.get_total_flops())


def _proc_status_kib(key: str) -> Optional[int]:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``); None where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_now_kib() -> Optional[int]:
    return _proc_status_kib("VmRSS")


def _rss_peak_kib() -> int:
    peak = _proc_status_kib("VmHWM")
    if peak is not None:
        return peak
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _reset_rss_peak() -> bool:
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


def _targets_for(outputs, batch: int, num_classes: int, device):
    """Random integer label maps matching the network's outputs (a list with deep supervision)."""
    import torch

    g = torch.Generator().manual_seed(0)
    if isinstance(outputs, (list, tuple)):
        return [torch.randint(0, num_classes, (batch, 1, *o.shape[2:]), generator=g).float().to(device)
                for o in outputs]
    return torch.randint(0, num_classes, (batch, 1, *outputs.shape[2:]), generator=g).float().to(device)


def _meta_output_shapes(net_meta, in_shape):
    import torch

    with torch.no_grad():
        out = net_meta(torch.zeros(tuple(in_shape), device="meta"))
    return out


def _trainer_step_fn(cls, plans, configuration, dataset_json, device, in_ch, out_ch):
    """(step(batch) -> None, network, description) using the trainer's own network/optimizer/loss/train_step."""
    pl = copy.deepcopy(plans)
    pl["continue_training"] = False
    with _quiet():
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


def _generic_step_fn(cls, pm, cm, device, in_ch, out_ch):
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
            out_shapes = _meta_output_shapes(ds_meta, (batch, in_ch, *patch))
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
            base_rss = _rss_now_kib()
            if not _reset_rss_peak():
                res["notes"].append("could not reset the peak RSS; memory is the process's peak RSS - RSS before")
        try:
            step, net, how = _trainer_step_fn(cls, plans, configuration, dataset_json, device, in_ch, out_ch)
        except Exception as e:
            res["notes"].append(f"trainer set-up failed ({type(e).__name__}: {str(e)[:80]}); generic step used")
            step, net, how = _generic_step_fn(cls, pm, cm, device, in_ch, out_ch)
        res["step"] = how
        g = torch.Generator().manual_seed(1)
        x = torch.randn((batch, in_ch, *patch), generator=g).to(device)
        if out_shapes is None:
            with torch.no_grad():
                out_shapes = net(x)
        batch_dict = {"data": x, "target": _targets_for(out_shapes, batch, out_ch, device)}
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
            res["peak_mib"] = (_rss_peak_kib() - (base_rss or 0)) / 1024
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
    with _quiet():
        pred = nnUNetPredictor(tile_step_size=float(spec.get("tile_step", 0.5)), use_gaussian=True,
                               use_mirroring=mirror is not None, perform_everything_on_device=True, device=device,
                               verbose=False, allow_tqdm=False)
        pred.manual_initialization(net, pm, cm, None, dataset_json, name, mirror)
    g = torch.Generator().manual_seed(2)
    warm = torch.randn((in_ch, *([1] + list(cm.patch_size) if dim == 2 else cm.patch_size)), generator=g)
    with _quiet():
        pred.predict_sliding_window_return_logits(warm)
    data = torch.randn((in_ch, *vol), generator=g)
    _sync(device)
    t0 = time.perf_counter()
    with _quiet():
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
                cmd = [sys.executable, "-c", "import sys; from nnunet_ext.benchmark import _worker_main; "
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


# ================================================================================================ accuracy
def _metrics_module():
    import importlib

    try:
        return importlib.import_module("nnunet_ext.metrics")
    except ImportError as e:
        raise _user_error(f"the accuracy part needs nnunet_ext.metrics ({e})") from None


def _case_id(entry: dict) -> str:
    f = entry.get("reference_file") or entry.get("prediction_file") or ""
    base = os.path.basename(str(f))
    for ext in (".nii.gz", ".nrrd", ".mha", ".nii", ".png", ".tif", ".tiff", ".npz", ".npy"):
        if base.endswith(ext):
            return base[: -len(ext)]
    return os.path.splitext(base)[0]


def per_case_table(summaries: Sequence[dict]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """{case: {class: {metric: value}}} from nnU-Net-layout summaries (folds concatenated)."""
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    for s in summaries:
        for entry in s.get("metric_per_case", []):
            cid = _case_id(entry)
            out[cid] = {str(k): {m: _num(v.get(m)) for m in METRICS} for k, v in entry.get("metrics", {}).items()}
    return out


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def wilcoxon_paired(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float, int]:
    """Paired two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon`` defaults) of a vs b after dropping pairs
    with a NaN. Returns (statistic, p, number of pairs); NaN statistic/p where the test is undefined (no pairs, or
    all differences zero)."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    n = int(keep.sum())
    if n == 0 or np.all(a == b):
        return float("nan"), float("nan"), n
    try:
        r = wilcoxon(a, b)
    except ValueError:
        return float("nan"), float("nan"), n
    return float(r.statistic), float(r.pvalue), n


def accuracy_stats(per_case: Dict[str, Dict[str, Dict[str, Dict[str, float]]]], reference: Optional[str]) -> dict:
    """Per trainer, class and metric: mean, std, n, n_nan (and vs the reference: p, statistic, n_pairs).

    ``per_case``: {trainer: {case: {class: {metric: value}}}}."""
    stats: Dict[str, Dict[str, Dict[str, dict]]] = {}
    classes = sorted({c for cases in per_case.values() for per in cases.values() for c in per}, key=_class_key)
    for tr, cases in per_case.items():
        stats[tr] = {}
        for c in classes:
            stats[tr][c] = {}
            for m in METRICS:
                vals = np.array([cases[k][c][m] for k in sorted(cases) if c in cases[k]], float)
                ok = vals[~np.isnan(vals)]
                d = {"mean": float(ok.mean()) if ok.size else float("nan"),
                     "std": float(ok.std(ddof=1)) if ok.size > 1 else float("nan"),
                     "n": int(ok.size), "n_nan": int(vals.size - ok.size)}
                if reference is not None and reference in per_case and tr != reference:
                    ref = per_case[reference]
                    common = sorted(k for k in cases if k in ref and c in cases[k] and c in ref[k])
                    stat, p, npairs = wilcoxon_paired([cases[k][c][m] for k in common],
                                                      [ref[k][c][m] for k in common])
                    d.update(p=p, statistic=stat, n_pairs=npairs, n_common=len(common))
                stats[tr][c][m] = d
    return stats


def _class_key(c: str):
    try:
        return (0, int(c), "")
    except ValueError:
        return (1, 0, c)


def collect_cv(trainers: Sequence[str], dataset: str, configuration: str, plans_identifier: str,
               folds: Sequence[int], nsd_tolerance_mm: float, num_processes: int, log=print,
               folders: Optional[Dict[str, str]] = None):
    """(per_case {trainer: ...}, missing {trainer: [folds]}, sources) from nnUNet_results' fold_X/validation;
    ``folders``: {row name: results folder in nnU-Net's trainer layout} for rows that are not trainers."""
    from nnunetv2.paths import nnUNet_results

    if not nnUNet_results.is_set():
        raise _user_error("nnUNet_results is not set (needed for --cv)")
    name = _dataset_name(dataset)
    folders = {tr: Path((folders or {}).get(tr) or
                        Path(str(nnUNet_results)) / name / f"{tr}__{plans_identifier}__{configuration}")
               for tr in trainers}
    if not any(mf.is_dir() for mf in folders.values()):
        raise _user_error(f"no trained model folder for any trainer in {Path(str(nnUNet_results)) / name} "
                          f"(looked for <trainer>__{plans_identifier}__{configuration})")
    metrics = _metrics_module()
    import inspect
    import warnings

    takes_folds = "folds" in inspect.signature(metrics.evaluate_trained_model_folds).parameters
    per_case, missing = {}, {}
    for tr, mf in folders.items():
        res, reasons, lost_cases = {}, {}, {}
        if mf.is_dir():
            kw = {"folds": list(folds)} if takes_folds else {}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = metrics.evaluate_trained_model_folds(str(mf), nsd_tolerance_mm=nsd_tolerance_mm,
                                                               num_processes=num_processes, **kw)
            except UserError as e:  # no fold at all: reported as missing, the other trainers go on
                reasons = {f: str(e) for f in folds}
            reasons.update(getattr(res, "missing", {}) or {})
            lost_cases = getattr(res, "missing_cases", {}) or {}
        else:
            reasons = {f: f"{mf} does not exist" for f in folds}
        res = {int(k): v for k, v in (res or {}).items()}
        good = [f for f in folds if isinstance(res.get(f), dict) and "metric_per_case" in res[f]]
        missing[tr] = [f for f in folds if f not in good]
        per_case[tr] = per_case_table([res[f] for f in good])
        msg = f"  {tr}: folds {good or 'none'}, {len(per_case[tr])} cases"
        if missing[tr]:
            why = reasons.get(missing[tr][0], "no validation predictions")
            msg += f"; MISSING folds {missing[tr]} (e.g. {why})"
        for f, lost in lost_cases.items():
            msg += f"; fold {f} lacks {len(lost)} validation case(s)"
        log(msg)
    return per_case, missing, {tr: str(mf) for tr, mf in folders.items()}


def collect_pred(preds: Dict[str, str], labels: str, dataset_json_file: str, plans_file: str,
                 nsd_tolerance_mm: float, num_processes: int, log=print):
    metrics = _metrics_module()
    per_case = {}
    for tr, folder in preds.items():
        s = metrics.evaluate_folder(labels, folder, dataset_json_file, plans_file, output_file=None,
                                    nsd_tolerance_mm=nsd_tolerance_mm, num_processes=num_processes, chill=True)
        per_case[tr] = per_case_table([s])
        log(f"  {tr}: {len(per_case[tr])} cases from {folder}")
    return per_case, {tr: [] for tr in preds}, dict(preds)


# ================================================================================================ output
def _fmt(v, nd=3):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _p_fmt(p):
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def class_names(dataset_json: Optional[dict]) -> Dict[str, str]:
    names = {}
    for k, v in ((dataset_json or {}).get("labels") or {}).items():
        key = str(v) if not isinstance(v, (list, tuple)) else str(tuple(v))
        names[key] = k
    return names


def build_rows(trainers: Sequence[str], figures: Dict[str, dict], stats: Optional[dict], missing: Dict[str, list],
               reference: Optional[str], names: Dict[str, str]) -> Tuple[List[str], List[List[str]], List[dict]]:
    """Markdown header + rows and CSV rows (numeric)."""
    header = ["Trainer"]
    fig_cols = bool(figures)
    if fig_cols:
        header += ["Params (M)", "GFLOPs", "Train step (ms)", "Peak mem (MiB)", "Inference (s)"]
    classes = []
    if stats:
        classes = sorted({c for t in stats.values() for c in t}, key=_class_key)
        for c in classes:
            label = names.get(c, c)
            header += [f"{label} Dice", f"{label} HD95 (mm)", f"{label} NSD"]
        header += ["Missing folds"]
    md_rows, csv_rows = [], []
    for tr in trainers:
        row, rec = [tr + (" (ref)" if stats and tr == reference else "")], {"trainer": tr}
        if fig_cols:
            f = figures.get(tr, {})
            if "error" in f:
                row += ["error"] + [""] * 4
                rec["error"] = f["error"]
            else:
                row += [_fmt(f.get("params", float("nan")) / 1e6, 2), _fmt(f.get("flops", float("nan")) / 1e9, 2),
                        _fmt(f.get("train_ms"), 0), _fmt(f.get("peak_mib"), 0), _fmt(f.get("infer_s"), 2)]
            for k in ("params", "flops", "train_ms", "peak_mib", "infer_s", "step", "memory_kind"):
                rec[k] = f.get(k)
        if stats:
            for c in classes:
                for m in METRICS:
                    d = stats.get(tr, {}).get(c, {}).get(m)
                    if not d:
                        row.append("—")
                        continue
                    nd = 2 if m == "HD95" else 3
                    cell = f"{_fmt(d['mean'], nd)} ± {_fmt(d['std'], nd)}"
                    if m == "HD95" and d["n_nan"]:
                        cell += f" ({d['n_nan']} NaN)"
                    if "p" in d:
                        cell += f" (p={_p_fmt(d['p'])}, n={d['n_pairs']})"
                    row.append(cell)
                    for k in ("mean", "std", "n", "n_nan", "p", "statistic", "n_pairs"):
                        rec[f"{names.get(c, c)}_{m}_{k}"] = d.get(k)
            row.append(", ".join(map(str, missing.get(tr, []))) or "none")
            rec["missing_folds"] = " ".join(map(str, missing.get(tr, [])))
        md_rows.append(row)
        csv_rows.append(rec)
    return header, md_rows, csv_rows


def markdown_table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def boxplots(per_case: Dict[str, Dict[str, Dict[str, Dict[str, float]]]], metric: str, path: Path,
             names: Dict[str, str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = sorted({c for cases in per_case.values() for per in cases.values() for c in per}, key=_class_key)
    trainers = list(per_case)
    fig, axes = plt.subplots(1, max(1, len(classes)), figsize=(max(4.0, 0.9 * len(trainers) + 2) * max(1, len(classes)),
                                                              4.5), squeeze=False)
    for ax, c in zip(axes[0], classes):
        data = []
        for tr in trainers:
            v = np.array([per_case[tr][k][c][metric] for k in per_case[tr] if c in per_case[tr][k]], float)
            data.append(v[~np.isnan(v)])
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(trainers) + 1))
        ax.set_xticklabels(trainers, rotation=35, ha="right", fontsize=8)
        ax.set_title(f"{names.get(c, c)}: {metric}" + (" (mm)" if metric == "HD95" else ""))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(out: Path, trainers: Sequence[str], figures: Dict[str, dict], per_case: Optional[dict],
                  stats: Optional[dict], missing: Dict[str, list], reference: Optional[str], names: Dict[str, str],
                  meta: dict) -> Tuple[str, List[Path]]:
    out.mkdir(parents=True, exist_ok=True)
    header, rows, recs = build_rows(trainers, figures, stats, missing, reference, names)
    table = markdown_table(header, rows)
    written = []
    md = ["# nnunet-ext benchmark", "", f"Command: `{meta.get('command', '')}`", ""]
    if figures:
        md += [f"Model figures: configuration `{meta.get('configuration')}`, patch {meta.get('patch_size')}, "
               f"batch {meta.get('batch_size')}, device {meta.get('device')}; FLOPs of one forward pass at batch 1 "
               f"(torch FlopCounterMode, multiply-add = 2 FLOPs, deep supervision off); train step = median of "
               f"{meta.get('repeats')} after {meta.get('warmup')} warm-up; peak memory = "
               f"{'CUDA max_memory_allocated' if meta.get('device') == 'cuda' else 'peak RSS rise of a fresh process'}"
               f"; inference = sliding window over one volume {meta.get('volume_shape')} "
               f"(mirroring {'on' if meta.get('mirroring') else 'off'}).", ""]
    if stats:
        md += [f"Accuracy: mean ± std over cases; p = paired two-sided Wilcoxon signed-rank test vs "
               f"`{reference}` on the n cases both have (NaN pairs dropped). HD95 'k NaN' = cases with exactly one "
               f"mask empty, excluded from the mean. NSD tolerance {meta.get('nsd_tolerance_mm')} mm.", ""]
    md += [table, ""]
    notes = [f"- {tr}: {'; '.join(f.get('notes', []))}" for tr, f in figures.items() if f.get("notes")]
    notes += [f"- {tr}: error: {f['error']}" for tr, f in figures.items() if "error" in f]
    if notes:
        md += ["Notes:", *notes, ""]
    (out / "benchmark.md").write_text("\n".join(md))
    written.append(out / "benchmark.md")
    keys = []
    for r in recs:
        keys += [k for k in r if k not in keys]
    with open(out / "benchmark.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(recs)
    written.append(out / "benchmark.csv")
    if per_case:
        with open(out / "per_case.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["trainer", "case", "class", *METRICS])
            for tr, cases in per_case.items():
                for k in sorted(cases):
                    for c in sorted(cases[k], key=_class_key):
                        w.writerow([tr, k, names.get(c, c), *[cases[k][c][m] for m in METRICS]])
        written.append(out / "per_case.csv")
        for m in ("Dice", "HD95"):
            p = out / f"boxplot_{m.lower()}.png"
            boxplots(per_case, m, p, names)
            written.append(p)
    (out / "benchmark.json").write_text(json.dumps(
        {"meta": meta, "figures": figures, "accuracy": stats, "missing_folds": missing, "per_case": per_case},
        indent=1, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o)))
    written.append(out / "benchmark.json")
    return table, written


# ================================================================================================ CLI
def register_cli(subparsers) -> None:
    s = subparsers.add_parser(
        "benchmark", help="model figures (params, FLOPs, step time, memory, inference) and accuracy vs stock nnU-Net",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Benchmark trainers against stock nnU-Net. Two parts, written together into --out DIR "
                    "(benchmark.md, benchmark.csv, benchmark.json; with accuracy also per_case.csv, "
                    "boxplot_dice.png, boxplot_hd95.png):\n"
                    "  model figures (default; --skip-models to leave out): trainable parameters, forward FLOPs at "
                    "batch 1 (torch FlopCounterMode on the meta device, multiply-add = 2 FLOPs), median training-step "
                    "time (the trainer's own train_step: loss, deep supervision, optimizer; AMP on CUDA), peak memory "
                    "(CUDA max_memory_allocated / CPU peak-RSS rise, each trainer in a fresh process), sliding-window "
                    "inference time of one --volume-shape volume; on -d/-c plans or an explicit --patch-size;\n"
                    "  accuracy (with --cv or --pred): per-class mean ± std of Dice, HD95, NSD over the cases of the "
                    "5-fold CV (fold_X/validation) or of prediction folders, and a paired Wilcoxon signed-rank test "
                    "of every trainer against --reference.\n\n"
                    "examples:\n"
                    "  nnunet-ext benchmark --patch-size 24 96 96 --batch-size 1 --device cpu --out bench3d\n"
                    "  nnunet-ext benchmark -d 991 -c 3d_fullres --device cuda --volume-shape 80 256 256 --out b\n"
                    "  nnunet-ext benchmark -d 991 -c 3d_fullres --skip-models --cv -tr nnUNetTrainerPlainUNet "
                    "nnUNetTrainer --out acc\n"
                    "  nnunet-ext benchmark --skip-models --pred ours=predA stock=predB --reference stock "
                    "--labels labelsTs -djfile dataset.json -pfile plans.json --out acc")
    s.add_argument("-tr", "--trainers", nargs="+", default=None, metavar="TRAINER",
                   help="trainer classes (default: every trainer of nnunet-ext + nnUNetTrainer); with --cv "
                        "--skip-models a row may be NAME=FOLDER, a results folder in nnU-Net's trainer layout "
                        "(fold_X/validation), e.g. of nnunet-ext crossval-c2f")
    g = s.add_argument_group("plans (model figures and --cv)")
    g.add_argument("-d", "--dataset", default=None, help="dataset name or id in nnUNet_preprocessed")
    g.add_argument("-c", "--configuration", default=None, help="configuration of the plans, e.g. 3d_fullres")
    g.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    g.add_argument("--patch-size", nargs="+", type=int, default=None,
                   help="explicit patch (2 or 3 numbers) instead of -d/-c: nnU-Net-like plans built in memory")
    g.add_argument("--dim", type=int, choices=(2, 3), default=None,
                   help="check that --patch-size has this dimension (2d/3d)")
    g.add_argument("--batch-size", type=int, default=2, help="batch size with --patch-size (default 2)")
    g.add_argument("--spacing", nargs="+", type=float, default=None,
                   help="voxel spacing for the topology with --patch-size (default isotropic 1)")
    g = s.add_argument_group("model figures")
    g.add_argument("--skip-models", action="store_true", help="accuracy only")
    g.add_argument("--device", choices=("cuda", "cpu"), default="cpu", help="device (default cpu)")
    g.add_argument("--warmup", type=int, default=2, help="warm-up training steps (default 2)")
    g.add_argument("--repeats", type=int, default=5, help="timed training steps, median reported (default 5; 0 skips)")
    g.add_argument("--volume-shape", nargs=3, type=int, default=None, metavar=("Z", "Y", "X"),
                   help="volume of the inference timing (default: plans' median image size, or 2x the patch with "
                        "--patch-size; 2d: (16, 2x patch))")
    g.add_argument("--no-inference", action="store_true", help="skip the inference timing")
    g.add_argument("--no-mirroring", action="store_true", help="inference without mirroring (test-time augmentation)")
    g.add_argument("--tile-step", type=float, default=0.5, help="sliding-window step as a fraction of the patch")
    g.add_argument("--timeout", type=float, default=None, help="seconds per trainer before it is reported as failed")
    g = s.add_argument_group("accuracy")
    g.add_argument("--cv", action="store_true",
                   help="evaluate the 5-fold CV of each trainer (nnUNet_results/<dataset>/<tr>__<plans>__<c>/fold_X/"
                        "validation); needs -d and -c")
    g.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="folds expected (default 0-4)")
    g.add_argument("--pred", nargs="+", default=None, metavar="NAME=FOLDER",
                   help="prediction folders to evaluate against --labels (NAME is the row name)")
    g.add_argument("--labels", default=None, help="reference label folder for --pred")
    g.add_argument("-djfile", "--dataset-json", default=None, help="dataset.json for --pred (default: from -d)")
    g.add_argument("-pfile", "--plans-json", default=None, help="plans.json for --pred (default: from -d)")
    g.add_argument("--reference", default=STOCK_TRAINER, help="row the Wilcoxon tests compare against "
                                                               f"(default {STOCK_TRAINER})")
    g.add_argument("--nsd-tolerance-mm", type=float, default=2.0, help="NSD tolerance (default 2 mm)")
    g.add_argument("-np", "--num-processes", type=int, default=1, help="processes for the evaluation")
    s.add_argument("--out", required=True, help="output folder")
    s.set_defaults(func=cmd_benchmark)


def cmd_benchmark(args) -> int:
    from nnunet_ext.cli import register_ext_trainers

    register_ext_trainers()
    out = Path(args.out)
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    # ------------------------------------------------------------------ validate everything before any work
    want_models = not args.skip_models
    want_acc = bool(args.cv or args.pred)
    if not want_models and not want_acc:
        raise _user_error("nothing to do: --skip-models without --cv or --pred")
    if args.cv and args.pred:
        raise _user_error("--cv and --pred are exclusive")
    plans = dataset_json = configuration = None
    if args.patch_size is not None:
        if args.dataset or args.configuration:
            raise _user_error("--patch-size and -d/-c are exclusive")
        if args.dim is not None and len(args.patch_size) != args.dim:
            raise _user_error(f"--patch-size {args.patch_size} does not have --dim {args.dim} entries")
        try:
            plans, dataset_json, configuration = explicit_plans(args.patch_size, args.batch_size, args.spacing)
        except ValueError as e:
            raise _user_error(f"--patch-size: {e}") from None
    elif args.dataset is not None or args.configuration is not None:
        if not (args.dataset and args.configuration):
            raise _user_error("-d and -c go together")
        plans, dataset_json, configuration = dataset_plans(args.dataset, args.configuration, args.plans)
    if want_models and plans is None:
        raise _user_error("model figures need -d D -c CONFIG or --patch-size (or --skip-models)")
    if args.cv and not (args.dataset and args.configuration):
        raise _user_error("--cv needs -d and -c")

    preds: Dict[str, str] = {}
    if args.pred:
        for item in args.pred:
            if "=" not in item:
                raise _user_error(f"--pred {item!r}: expected NAME=FOLDER")
            k, v = item.split("=", 1)
            if not Path(v).is_dir():
                raise _user_error(f"missing prediction folder {v}")
            preds[k] = v
        if not args.labels or not Path(args.labels).is_dir():
            raise _user_error(f"missing label folder {args.labels}" if args.labels else "--pred needs --labels")
        dj, pj = args.dataset_json, args.plans_json
        if (dj is None or pj is None) and args.dataset:
            from nnunetv2.paths import nnUNet_preprocessed

            folder = Path(str(nnUNet_preprocessed)) / _dataset_name(args.dataset)
            dj = dj or str(folder / "dataset.json")
            pj = pj or str(folder / f"{args.plans}.json")
        for flag, f in (("-djfile", dj), ("-pfile", pj)):
            if f is None or not Path(f).is_file():
                raise _user_error(f"--pred needs {flag} (missing {f})" if f else f"--pred needs {flag} or -d")
        if dataset_json is None:
            dataset_json = json.loads(Path(dj).read_text())

    if args.pred and not args.trainers:
        trainers = list(preds)  # NAME of --pred is the row; with model figures it must be a trainer class
    else:
        trainers = list(dict.fromkeys(args.trainers or default_trainers()))
    # --cv rows NAME=FOLDER: a results folder in nnU-Net's trainer layout (e.g. from nnunet-ext crossval-c2f)
    cv_folders = {t.split("=", 1)[0]: t.split("=", 1)[1] for t in trainers if "=" in t}
    if cv_folders:
        if not args.cv or want_models:
            raise _user_error("-tr NAME=FOLDER rows (results folders, e.g. of crossval-c2f) need --cv --skip-models")
        for k, v in cv_folders.items():
            if not Path(v).is_dir():
                raise _user_error(f"-tr {k}={v}: {v} is not a folder")
        trainers = [t.split("=", 1)[0] for t in trainers]
    if want_models or args.cv:
        for tr in trainers:
            if tr not in cv_folders:
                find_trainer_class(tr)
    reference = args.reference if want_acc else None
    if want_acc and reference not in (preds if args.pred else trainers):
        raise _user_error(f"--reference {reference!r} is not among the compared rows "
                          f"({', '.join(preds if args.pred else trainers)})")
    if want_acc:
        _metrics_module()
    volume = None
    if want_models and not args.no_inference:
        cm = plans["configurations"][configuration]
        if args.volume_shape:
            volume = list(args.volume_shape)
        elif args.patch_size is None and "median_image_size_in_voxels" in cm:
            volume = [int(round(v)) for v in cm["median_image_size_in_voxels"]]
            if len(volume) == 2:
                volume = [16, *volume]
        else:
            ps = list(cm["patch_size"])
            volume = [2 * p for p in ps] if len(ps) == 3 else [16, *[2 * p for p in ps]]

    # ------------------------------------------------------------------ work
    t0 = time.perf_counter()
    figures: Dict[str, dict] = {}
    import shlex

    command = ("nnunet-ext " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["benchmark"]
               else "nnunet-ext benchmark (called from Python)")
    meta = {"command": command, "trainers": trainers}
    if want_models:
        cfg = plans["configurations"][configuration]
        meta.update(configuration=configuration, patch_size=cfg.get("patch_size"), batch_size=cfg.get("batch_size"),
                    device=args.device, warmup=args.warmup, repeats=args.repeats, volume_shape=volume,
                    mirroring=not args.no_mirroring)
        if args.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise _user_error("--device cuda: no CUDA device available")
        log(f"model figures: {len(trainers)} trainers, {configuration} patch {cfg.get('patch_size')} batch "
            f"{cfg.get('batch_size')} on {args.device}")
        res = run_model_figures(
            [t for t in trainers], plans, dataset_json, configuration, device=args.device, warmup=args.warmup,
            repeats=args.repeats, volume_shape=volume, mirroring=not args.no_mirroring, tile_step=args.tile_step,
            timeout=args.timeout, log=log)
        figures = {r["trainer"]: r for r in res}
    per_case = stats = None
    missing: Dict[str, list] = {}
    if want_acc:
        meta.update(nsd_tolerance_mm=args.nsd_tolerance_mm, reference=reference)
        log("accuracy:")
        if args.cv:
            per_case, missing, sources = collect_cv(trainers, args.dataset, args.configuration, args.plans,
                                                    args.folds, args.nsd_tolerance_mm, args.num_processes, log,
                                                    folders=cv_folders)
        else:
            per_case, missing, sources = collect_pred(preds, args.labels, dj, pj, args.nsd_tolerance_mm,
                                                      args.num_processes, log)
        meta["sources"] = sources
        stats = accuracy_stats(per_case, reference)
    rows = list(dict.fromkeys([*(trainers if want_models or args.cv else []), *preds]))
    table, written = write_outputs(out, rows, figures, per_case, stats, missing, reference,
                                   class_names(dataset_json), meta)
    print()
    print(summary_text(rows, figures, stats, missing, reference, class_names(dataset_json)))
    print(f"\nwritten to {out} ({', '.join(p.name for p in written)}) in {time.perf_counter() - t0:.0f} s")
    return 0


def summary_text(trainers, figures, stats, missing, reference, names) -> str:
    """A compact, one-screen summary (Dice/HD95 only, p-values vs the reference)."""
    lines = []
    w = max([len(t) for t in trainers] + [7])
    if figures:
        lines.append(f"{'trainer':<{w}} {'params(M)':>9} {'GFLOPs':>8} {'step(ms)':>9} {'mem(MiB)':>9} {'infer(s)':>8}")
        for tr in trainers:
            f = figures.get(tr, {})
            if "error" in f:
                lines.append(f"{tr:<{w}} ERROR {f['error'][:60]}")
                continue
            lines.append(f"{tr:<{w}} {f['params'] / 1e6:>9.2f} {f['flops'] / 1e9:>8.2f} "
                         f"{_fmt(f.get('train_ms'), 0):>9} {_fmt(f.get('peak_mib'), 0):>9} "
                         f"{_fmt(f.get('infer_s'), 2):>8}")
    if stats:
        classes = sorted({c for t in stats.values() for c in t}, key=_class_key)
        lines.append("")
        lines.append(f"{'trainer':<{w}} " + " ".join(f"{names.get(c, c)[:10] + ' Dice':>22} {'HD95':>20}"
                                                    for c in classes) + "  missing")
        for tr in trainers:
            cells = []
            for c in classes:
                for m, nd in (("Dice", 3), ("HD95", 1)):
                    d = stats.get(tr, {}).get(c, {}).get(m, {})
                    s = f"{_fmt(d.get('mean'), nd)}±{_fmt(d.get('std'), nd)}"
                    if "p" in d:
                        s += f" p={_p_fmt(d['p'])}"
                    cells.append(f"{s:>{22 if m == 'Dice' else 20}}")
            lines.append(f"{tr:<{w}} " + " ".join(cells) + "  " + (",".join(map(str, missing.get(tr, []))) or "-"))
        lines.append(f"(p: paired Wilcoxon vs {reference}; NSD and counts in benchmark.md)")
    return "\n".join(lines)
