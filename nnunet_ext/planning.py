"""``nnunet-ext plan``: nnU-Net planning (and preprocessing where needed) sized to a GPU-memory target for one or
more registered architectures (``--arch A B ...`` or ``--arch all``) (:class:`nnunet_ext.plans.planner.ArchitecturePlanner`).

nnU-Net's ``nnUNetv2_plan_and_preprocess -pl`` only finds planner classes inside nnunetv2, so this command runs
the same steps: the dataset fingerprint (only if it is missing), planning into ``nnUNetPlans_<arch>``, and
nnU-Net's preprocessing for each configuration whose data does not exist yet (2d and 3d_fullres reuse the default
plans' preprocessed data, as nnU-Net's ResEnc presets do). Then, e.g.::

    nnUNetv2_train D 3d_fullres 0 -p nnUNetPlans_dlkunet_s -tr nnUNetTrainerDLKUNetS
    nnUNetv2_train D 3d_fullres 0 -p nnUNetPlans_dlkunet_s -tr nnUNetTrainer      # stock trainer, same network
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from nnunet_ext.errors import UserError, dataset_name
from nnunet_ext.lookup import quiet

DEFAULT_CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres")


def _dataset(dataset: str) -> tuple:
    from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id

    for var in ("nnUNet_raw", "nnUNet_preprocessed"):
        if not os.environ.get(var):
            raise UserError(f"{var} is not set (nnU-Net's environment variables are needed for planning)")
    name = dataset_name(dataset)
    if not (Path(os.environ["nnUNet_raw"]) / name).is_dir():
        raise UserError(f"dataset {name}: {Path(os.environ['nnUNet_raw']) / name} does not exist")
    return name, convert_dataset_name_to_id(name)


def _data_exists(pre: Path, data_identifier: str) -> bool:
    folder = pre / data_identifier
    return folder.is_dir() and any(folder.iterdir())


def resolve_archs(archs: Union[str, Sequence[str]]) -> List[str]:
    """Registered names for a list of architectures (``all``: every registered one); UserError naming the first
    unknown one."""
    from nnunet_ext.architectures import UnknownArchitectureError, get_spec, list_architectures

    names = [archs] if isinstance(archs, str) else list(archs)
    if "all" in names:
        names = list_architectures()
    out = []
    for a in names:
        try:
            get_spec(a)
        except UnknownArchitectureError as e:
            raise UserError(f"--arch {a}: {e}") from None
        if a not in out:
            out.append(a)
    return out


def plan(dataset: str, arch: Union[str, Sequence[str]], gpu_memory_target_gb: float = 8.0,
         configurations: Sequence[str] = DEFAULT_CONFIGURATIONS, num_processes: int = 1,
         plans_name: Optional[str] = None, preprocess: bool = True) -> Dict[str, dict]:
    """Plan ``dataset`` for each architecture of ``arch`` (a name, a list, or ``all``); returns the plans by
    architecture (also written to nnUNet_preprocessed). Every architecture is planned before any plans file is
    written, so that a target at which one of them does not fit leaves nothing behind."""
    archs = resolve_archs(arch)
    if plans_name and len(archs) > 1:
        raise UserError(f"--plans-name {plans_name} needs a single --arch (got {len(archs)})")
    if not gpu_memory_target_gb > 0:
        raise UserError(f"--gpu-memory-target must be > 0 GB, got {gpu_memory_target_gb:g}")
    name, did = _dataset(dataset)
    pre = Path(os.environ["nnUNet_preprocessed"]) / name

    from nnunet_ext.plans.planner import ArchitecturePlanner, PlanningError, plans_name_for

    if not (pre / "dataset_fingerprint.json").is_file():
        from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset

        print(f"no fingerprint for {name}: extracting it (nnUNetv2_extract_fingerprint)")
        extract_fingerprint_dataset(did, num_processes=max(1, num_processes))
    planners, all_plans = {}, {}
    for a in archs:
        try:
            planners[a] = ArchitecturePlanner(did, gpu_memory_target_gb, plans_name=plans_name or plans_name_for(a),
                                              arch=a)
            planners[a].write_plans = False
            with quiet():
                all_plans[a] = planners[a].plan_experiment()
        except PlanningError as e:
            raise UserError(str(e)) from None
    stock = _stock_plans(did, gpu_memory_target_gb)

    for a in archs:  # all planned: write them
        planners[a].write_plans = True
        with quiet():
            planners[a].save_plans(all_plans[a])
    todo = [c for c in configurations if any(c in p["configurations"] for p in all_plans.values())]
    skipped = [c for c in configurations if c not in todo]
    if skipped:
        print(f"not planned for this dataset (as nnU-Net decides): {', '.join(skipped)}")
    for a in archs:
        plans = all_plans[a]
        for c in (c for c in todo if c in plans["configurations"]):
            ident = plans["configurations"][c]["data_identifier"]
            if _data_exists(pre, ident):
                print(f"{a} {c}: reusing preprocessed data {pre / ident}")
            elif preprocess:
                from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess_dataset

                print(f"{a} {c}: preprocessing into {pre / ident}")
                preprocess_dataset(did, plans["plans_name"], [c], [max(1, num_processes)], verbose=False)
            else:
                print(f"{a} {c}: needs preprocessing: nnUNetv2_preprocess -d {did} -plans_name "
                      f"{plans['plans_name']} -c {c}")
    print(summary(all_plans, stock, todo, pre, did, gpu_memory_target_gb))
    return all_plans


def _stock_plans(dataset_id: int, gpu_memory_target_gb: float) -> dict:
    """Stock nnU-Net's plans at the same target, in memory only: ``plain_unet`` at kappa = 1 is nnU-Net's
    ExperimentPlanner (same patch, batch and topology; tests/unit/test_planner.py checks it), on the meta device."""
    from nnunet_ext.plans.planner import ArchitecturePlanner

    planner = ArchitecturePlanner(dataset_id, gpu_memory_target_gb, arch="plain_unet")
    planner.write_plans = False
    with quiet():
        return planner.plan_experiment()


def configuration_figures(arch: str, conf: dict) -> Tuple[float, float]:
    """(estimated GPU memory in GB, GFLOPs of one training step) of ``arch`` on a plans configuration: the
    planner's model (:func:`nnunet_ext.plans.planner.training_memory`) and forward + backward = 3 x the forward
    FLOPs (torch's FlopCounterMode on the meta device, a multiply-add = 2 FLOPs) times the batch."""
    import torch

    from nnunet_ext.architectures import forward_flops
    from nnunet_ext.plans.planner import build_meta, training_memory

    kwargs, patch, batch = conf["architecture"]["arch_kwargs"], conf["patch_size"], conf["batch_size"]
    net = build_meta(arch, kwargs, 1, 3)
    gb = training_memory(arch, kwargs, patch, batch, 1, 3, net=net)["gpu_gb"]
    net.decoder.deep_supervision = False
    return gb, 3 * batch * forward_flops(net, (1, 1, *patch), "meta") / 1e9


def summary(all_plans: Dict[str, dict], stock: dict, configurations: Sequence[str], pre: Path, dataset_id: int,
            target_gb: float) -> str:
    header = ["architecture", "configuration", "patch", "batch", "est. GB", "GFLOPs/step",
              "stock patch", "stock batch", "stock est. GB", "stock GFLOPs/step"]
    rows = []
    stock_fig = {c: configuration_figures("plain_unet", stock["configurations"][c])
                 for c in configurations if c in stock["configurations"]}
    for a, plans in all_plans.items():
        for c in configurations:
            if c not in plans["configurations"]:
                continue
            conf = plans["configurations"][c]
            gb, gflops = configuration_figures(a, conf)
            row = [a, c, "x".join(map(str, conf["patch_size"])), str(conf["batch_size"]), f"{gb:.2f}", f"{gflops:.0f}"]
            if c in stock["configurations"]:
                sc = stock["configurations"][c]
                row += ["x".join(map(str, sc["patch_size"])), str(sc["batch_size"]), f"{stock_fig[c][0]:.2f}",
                        f"{stock_fig[c][1]:.0f}"]
            else:
                row += ["-"] * 4
            rows.append(row)
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = [f"plans at {target_gb:g} GB in {pre} (stock: nnU-Net's plan at the same target, not "
             f"written; est. = nnunet-ext's planner model, GFLOPs/step = 3 x forward x batch)",
             "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    for a, plans in all_plans.items():
        info = plans.get("nnunet_ext", {})
        kappas = ", ".join(f"{d} {mf['kappa']:.3f}" for d, mf in sorted(info.get("memory_factor", {}).items()))
        lines.append(f"{a}: {pre / (plans['plans_name'] + '.json')} (kappa {kappas}); train: nnUNetv2_train "
                     f"{dataset_id} {configurations[-1] if configurations else 'CONFIG'} FOLD -p "
                     f"{plans['plans_name']} -tr TRAINER")
    return "\n".join(lines)


def cmd_plan(args) -> int:
    plan(args.d, args.arch, args.gpu_memory_target, args.c, args.np, args.plans_name, not args.no_preprocess)
    return 0


def register_cli(subparsers, name: str, help: str) -> None:
    s = subparsers.add_parser(
        name, help=help,
        description="Runs nnU-Net's ExperimentPlanner with the memory estimate of a registered architecture "
                    "(kappa x its compute_conv_feature_map_size, kappa from plans/memory_calibration.json) and "
                    "writes nnUNetPlans_<ARCH> naming that architecture, so that 'nnUNetv2_train D CONFIG FOLD -p "
                    "nnUNetPlans_<ARCH> -tr TRAINER' trains it (stock nnUNetTrainer too). Extracts the fingerprint "
                    "if missing; preprocesses only configurations whose data does not exist (2d and 3d_fullres "
                    "reuse nnUNetPlans' preprocessed data). Prints one table: per architecture and configuration the patch, "
                    "batch, estimated GPU memory and GFLOPs per training step, beside stock nnU-Net's plan at the same "
                    "target. Every architecture is planned before any file is written.")
    s.add_argument("-d", required=True, help="dataset name or id")
    s.add_argument("--arch", required=True, nargs="+", metavar="ARCH",
                   help="registered architectures (nnunet-ext archs), or 'all'; one plans file each")
    s.add_argument("--gpu-memory-target", type=float, default=8.0, metavar="GB",
                   help="GPU memory to plan for, in GB (nnU-Net's default 8)")
    s.add_argument("-c", nargs="+", default=list(DEFAULT_CONFIGURATIONS), metavar="CONFIG",
                   help="configurations to preprocess (default: 2d 3d_fullres 3d_lowres, where nnU-Net plans them)")
    s.add_argument("-np", type=int, default=1, help="processes for fingerprinting and preprocessing (default 1)")
    s.add_argument("--plans-name", default=None,
                   help="plans identifier (default nnUNetPlans_<ARCH>; only with a single --arch)")
    s.add_argument("--no-preprocess", action="store_true", help="plan only; print the preprocessing commands")
    s.set_defaults(func=cmd_plan)
