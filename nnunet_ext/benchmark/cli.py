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

**Accuracy** (when ``--cv`` or ``--pred`` is given): per-case Dice, HD95 and NSD
(:mod:`nnunet_ext.evaluation.summary`) of each trainer's 5-fold cross-validation (``fold_X/validation`` in
``nnUNet_results``) or of given prediction folders
(``--pred NAME=FOLDER ... --labels FOLDER``); per class mean ± std under the empty-mask conventions of
:mod:`nnunet_ext.evaluation.table` (both masks empty: excluded; exactly one empty: the worst value, counted beside the
mean); a paired two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, default options) of each trainer
against ``--reference`` per class and metric on the cases both have, pairs with a NaN dropped, the number of pairs
reported. Missing folds are reported in the table and on stdout.

Outputs: ``benchmark.md`` (a table in the spirit of DMC-Net's Table 3), ``benchmark.csv`` (one row per trainer),
``per_case.csv``, ``benchmark.json`` (everything), ``boxplot_dice.png`` and ``boxplot_hd95.png``.

This module is the command line; the work is done by one module per job: :mod:`nnunet_ext.plans.synth` (plans),
:mod:`nnunet_ext.lookup` (trainer lookup), :mod:`nnunet_ext.benchmark.profile` (model figures, subprocess
isolation), :mod:`nnunet_ext.benchmark.accuracy` (accuracy statistics), :mod:`nnunet_ext.benchmark.report` (tables,
plots).
Their public functions are re-exported here.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, Optional

from nnunet_ext.benchmark.accuracy import (METRICS, BOOTSTRAP_CONFIDENCE, BOOTSTRAP_RESAMPLES,  # noqa: F401
                                           BOOTSTRAP_SEED, accuracy_stats, bootstrap_mean_difference, class_key,
                                           collect_cv, collect_pred,
                                           cv_folders, per_case_table, row_postprocessing, wilcoxon_paired)
from nnunet_ext.plans.synth import DEFAULT_LABELS, dataset_plans, explicit_plans  # noqa: F401
from nnunet_ext.architectures import forward_flops  # noqa: F401
from nnunet_ext.benchmark.profile import measure_trainer, run_model_figures  # noqa: F401
from nnunet_ext.benchmark.report import (boxplots, build_rows, class_names, markdown_table, summary_text,  # noqa: F401
                                     write_outputs)
from nnunet_ext.lookup import STOCK_TRAINER, build_network, default_trainers, find_trainer_class  # noqa: F401
from nnunet_ext.errors import UserError, dataset_name
from nnunet_ext.evaluation.cli import add_nsd_convention_argument, add_postprocessing_argument
from nnunet_ext.evaluation.postprocessing import check_rule
from nnunet_ext.evaluation.surface import check_nsd_convention_option

__all__ = ["METRICS", "DEFAULT_LABELS", "STOCK_TRAINER", "accuracy_stats", "bootstrap_mean_difference", "boxplots",
           "build_network", "build_rows",
           "class_key", "class_names", "collect_cv", "collect_pred", "dataset_plans", "default_trainers",
           "explicit_plans", "find_trainer_class", "forward_flops", "markdown_table", "measure_trainer",
           "per_case_table", "run_model_figures", "summary_text", "wilcoxon_paired", "write_outputs", "register_cli",
           "cmd_benchmark"]


def register_cli(subparsers, name: str, help: str) -> None:
    s = subparsers.add_parser(
        name, help=help,
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
    add_nsd_convention_argument(g)
    add_postprocessing_argument(g)
    g.add_argument("-np", "--num-processes", type=int, default=1, help="processes for the evaluation")
    s.add_argument("--out", required=True, help="output folder")
    s.set_defaults(func=cmd_benchmark)


def cmd_benchmark(args) -> int:
    from nnunet_ext.lookup import register_ext_trainers

    register_ext_trainers()
    out = Path(args.out)
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    # ------------------------------------------------------------------ validate everything before any work
    from nnunet_ext.checks import check_output_path
    check_output_path(args.out, "--out folder")
    want_models = not args.skip_models
    want_acc = bool(args.cv or args.pred)
    if not want_models and not want_acc:
        raise UserError("nothing to do: --skip-models without --cv or --pred")
    if args.cv and args.pred:
        raise UserError("--cv and --pred are exclusive")
    check_rule(args.postprocessing)
    check_nsd_convention_option(args.nsd_convention)
    plans = dataset_json = configuration = None
    if args.patch_size is not None:
        if args.dataset or args.configuration:
            raise UserError("--patch-size and -d/-c are exclusive")
        if args.dim is not None and len(args.patch_size) != args.dim:
            raise UserError(f"--patch-size {args.patch_size} does not have --dim {args.dim} entries")
        try:
            plans, dataset_json, configuration = explicit_plans(args.patch_size, args.batch_size, args.spacing)
        except ValueError as e:
            raise UserError(f"--patch-size: {e}") from None
    elif args.dataset is not None or args.configuration is not None:
        if not (args.dataset and args.configuration):
            raise UserError("-d and -c go together")
        plans, dataset_json, configuration = dataset_plans(args.dataset, args.configuration, args.plans)
    if want_models and plans is None:
        raise UserError("model figures need -d D -c CONFIG or --patch-size (or --skip-models)")
    if args.cv and not (args.dataset and args.configuration):
        raise UserError("--cv needs -d and -c")

    preds: Dict[str, str] = {}
    if args.pred:
        for item in args.pred:
            if "=" not in item:
                raise UserError(f"--pred {item!r}: expected NAME=FOLDER")
            k, v = item.split("=", 1)
            if not Path(v).is_dir():
                raise UserError(f"missing prediction folder {v}")
            preds[k] = v
        if not args.labels or not Path(args.labels).is_dir():
            raise UserError(f"missing label folder {args.labels}" if args.labels else "--pred needs --labels")
        dj, pj = args.dataset_json, args.plans_json
        if (dj is None or pj is None) and args.dataset:
            from nnunetv2.paths import nnUNet_preprocessed

            folder = Path(str(nnUNet_preprocessed)) / dataset_name(args.dataset)
            dj = dj or str(folder / "dataset.json")
            pj = pj or str(folder / f"{args.plans}.json")
        for flag, f in (("-djfile", dj), ("-pfile", pj)):
            if f is None or not Path(f).is_file():
                raise UserError(f"--pred needs {flag} (missing {f})" if f else f"--pred needs {flag} or -d")
        if dataset_json is None:
            dataset_json = json.loads(Path(dj).read_text())
        from nnunet_ext.checks import check_evaluation_folders  # every --pred file checked before any work
        check_evaluation_folders(args.labels, preds.values(), dataset_json.get("file_ending"))

    if args.pred and not args.trainers:
        trainers = list(preds)  # NAME of --pred is the row; with model figures it must be a trainer class
    else:
        trainers = list(dict.fromkeys(args.trainers or default_trainers()))
    # --cv rows NAME=FOLDER: a results folder in nnU-Net's trainer layout (e.g. from nnunet-ext crossval-c2f)
    cv_folders_given = {t.split("=", 1)[0]: t.split("=", 1)[1] for t in trainers if "=" in t}
    if cv_folders_given:
        if not args.cv or want_models:
            raise UserError("-tr NAME=FOLDER rows (results folders, e.g. of crossval-c2f) need --cv --skip-models")
        for k, v in cv_folders_given.items():
            if not Path(v).is_dir():
                raise UserError(f"-tr {k}={v}: {v} is not a folder")
        trainers = [t.split("=", 1)[0] for t in trainers]
    if want_models or args.cv:
        for tr in trainers:
            if tr not in cv_folders_given:
                find_trainer_class(tr)
    if want_models and args.patch_size is not None:
        check_patch_fits(trainers, plans, dataset_json, configuration)
    row_pp = {}
    if args.cv:  # each row's post-processing checked (its postprocessing.pkl read) before any scoring
        row_pp = row_postprocessing(args.postprocessing, cv_folders(trainers, args.dataset, args.configuration,
                                                                    args.plans, cv_folders_given), args.folds)
    elif args.pred:
        row_pp = row_postprocessing(args.postprocessing, {k: Path(v) for k, v in preds.items()})
    reference = args.reference if want_acc else None
    if want_acc and reference not in (preds if args.pred else trainers):
        raise UserError(f"--reference {reference!r} is not among the compared rows "
                          f"({', '.join(preds if args.pred else trainers)})")
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
                raise UserError("--device cuda: no CUDA device available")
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
        meta.update(nsd_tolerance_mm=args.nsd_tolerance_mm, nsd_convention=args.nsd_convention, reference=reference,
                    postprocessing=args.postprocessing,
                    postprocessing_files={k: v.pkl for k, v in row_pp.items() if v.pkl},
                    bootstrap=f"{BOOTSTRAP_CONFIDENCE:.0%} CI (BCa, {BOOTSTRAP_RESAMPLES} resamples, seed "
                              f"{BOOTSTRAP_SEED})")
        log("accuracy:")
        if args.cv:
            per_case, missing, sources = collect_cv(trainers, args.dataset, args.configuration, args.plans,
                                                    args.folds, args.nsd_tolerance_mm, args.num_processes, log,
                                                    folders=cv_folders_given, nsd_convention=args.nsd_convention,
                                                    postprocessing=row_pp)
        else:
            per_case, missing, sources = collect_pred(preds, args.labels, dj, pj, args.nsd_tolerance_mm,
                                                      args.num_processes, log, nsd_convention=args.nsd_convention,
                                                      postprocessing=row_pp)
        meta["sources"] = sources
        stats = accuracy_stats(per_case, reference)
    rows = list(dict.fromkeys([*(trainers if want_models or args.cv else []), *preds]))
    table, written = write_outputs(out, rows, figures, per_case, stats, missing, reference,
                                   class_names(dataset_json), meta)
    print()
    print(summary_text(rows, figures, stats, missing, reference, class_names(dataset_json), meta))
    print(f"\nwritten to {out} ({', '.join(p.name for p in written)}) in {time.perf_counter() - t0:.0f} s")
    failed = failed_rows(rows, figures, per_case, want_models, want_acc)
    if failed and len(failed) == len(rows):
        print(f"error: every row failed ({', '.join(failed)}); see {out / 'benchmark.md'}", file=sys.stderr)
        return 1
    return 0


def failed_rows(rows, figures: Dict[str, dict], per_case: Optional[dict], want_models: bool, want_acc: bool):
    """The rows with nothing measured: model figures that raised (when asked for) and no scored case (when accuracy
    was asked for); a row fails only when every part asked for failed."""
    out = []
    for r in rows:
        models_failed = want_models and (r not in figures or "error" in figures[r])
        acc_failed = want_acc and not (per_case or {}).get(r)
        if (models_failed or not want_models) and (acc_failed or not want_acc):
            out.append(r)
    return out


def check_patch_fits(trainers, plans: dict, dataset_json: dict, configuration: str) -> None:
    """Before any work: every trainer's network is built on the meta device for ``--patch-size`` (deep supervision
    on) and takes a meta input of the patch; the rule of the planner (``plans/planner.py``): a topology the
    architecture cannot be built on (ValueError/RuntimeError while building or running) means the patch is too
    small for it. UserError naming the trainer and the patch. Allocates nothing (meta device)."""
    import copy

    import torch
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_ext.benchmark.profile import meta_outputs

    pm = PlansManager(copy.deepcopy(plans))
    cm = pm.get_configuration(configuration)
    in_ch = determine_num_input_channels(pm, cm, dataset_json)
    out_ch = pm.get_label_manager(dataset_json).num_segmentation_heads
    patch = [int(p) for p in cm.patch_size]
    for tr in trainers:
        cls = find_trainer_class(tr)
        try:
            with torch.device("meta"):
                net = build_network(cls, pm, cm, in_ch, out_ch, True)
            meta_outputs(net, (1, in_ch, *patch))
        except (ValueError, RuntimeError, IndexError, AssertionError) as e:
            raise UserError(f"--patch-size {patch} is too small for {tr}: its network cannot be built or run on "
                            f"{len(cm.pool_op_kernel_sizes)} stage(s) ({type(e).__name__}: "
                            f"{(str(e).splitlines() or [''])[0][:120]})") from None
