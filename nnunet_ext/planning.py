"""``nnunet-ext plan``: nnU-Net planning (and preprocessing where needed) sized to a GPU-memory target for one
registered architecture (:class:`nnunet_ext.plans.planner.ArchitecturePlanner`).

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
from typing import Optional, Sequence

from nnunet_ext.errors import UserError, dataset_name

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


def plan(dataset: str, arch: str, gpu_memory_target_gb: float = 8.0,
         configurations: Sequence[str] = DEFAULT_CONFIGURATIONS, num_processes: int = 1,
         plans_name: Optional[str] = None, preprocess: bool = True) -> dict:
    """Plan ``dataset`` for ``arch``; returns the plans (also written to nnUNet_preprocessed)."""
    from nnunet_ext.architectures import UnknownArchitectureError, get_spec

    try:
        get_spec(arch)
    except UnknownArchitectureError as e:
        raise UserError(str(e)) from None
    if not gpu_memory_target_gb > 0:
        raise UserError(f"--gpu-memory-target must be > 0 GB, got {gpu_memory_target_gb:g}")
    name, did = _dataset(dataset)
    pre = Path(os.environ["nnUNet_preprocessed"]) / name

    from nnunet_ext.plans.planner import ArchitecturePlanner, PlanningError, plans_name_for

    plans_name = plans_name or plans_name_for(arch)
    if not (pre / "dataset_fingerprint.json").is_file():
        from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset

        print(f"no fingerprint for {name}: extracting it (nnUNetv2_extract_fingerprint)")
        extract_fingerprint_dataset(did, num_processes=max(1, num_processes))
    plans_file = pre / f"{plans_name}.json"
    try:
        planner = ArchitecturePlanner(did, gpu_memory_target_gb, plans_name=plans_name, arch=arch)
        plans = planner.plan_experiment()
    except PlanningError as e:
        raise UserError(str(e)) from None

    todo = [c for c in configurations if c in plans["configurations"]]
    skipped = [c for c in configurations if c not in plans["configurations"]]
    if skipped:
        print(f"not planned for this dataset (as nnU-Net decides): {', '.join(skipped)}")
    for c in todo:
        ident = plans["configurations"][c]["data_identifier"]
        if _data_exists(pre, ident):
            print(f"{c}: reusing preprocessed data {pre / ident}")
        elif preprocess:
            from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess_dataset

            print(f"{c}: preprocessing into {pre / ident}")
            preprocess_dataset(did, plans_name, [c], [max(1, num_processes)], verbose=False)
        else:
            print(f"{c}: needs preprocessing: nnUNetv2_preprocess -d {did} -plans_name {plans_name} -c {c}")
    print(summary(plans, todo, plans_file, did))
    return plans


def summary(plans: dict, configurations: Sequence[str], plans_file: Path, dataset_id: int) -> str:
    info = plans.get("nnunet_ext", {})
    arch = info.get("architecture", "?")
    lines = [f"plans for {arch} at {info.get('gpu_memory_target_in_gb', '?'):g} GB: {plans_file}",
             "configuration  patch size          batch  stages  estimated GPU memory (GB)"]
    for c in configurations:
        conf = plans["configurations"][c]
        est = info.get("estimated_gpu_memory_gb", {}).get(c, float("nan"))
        lines.append(f"{c:<14} {'x'.join(map(str, conf['patch_size'])):<19} {conf['batch_size']:>5}  "
                     f"{conf['architecture']['arch_kwargs'].get('n_stages', '?'):>6}  {est:.2f}")
    for dim, mf in sorted(info.get("memory_factor", {}).items()):
        lines.append(f"memory factor {dim}: kappa = {mf['kappa']:.3f} ({mf['source']})")
    if configurations:
        lines.append(f"train: nnUNetv2_train {dataset_id} {configurations[-1]} 0 -p {plans['plans_name']} -tr <Trainer>")
    return "\n".join(lines)


def cmd_plan(args) -> int:
    plan(args.d, args.arch, args.gpu_memory_target, args.c, args.np, args.plans_name, not args.no_preprocess)
    return 0


def register_cli(subparsers) -> None:
    s = subparsers.add_parser(
        "plan", help="nnU-Net planning (+ preprocessing where needed) sized to a GPU-memory target for one "
                     "architecture",
        description="Runs nnU-Net's ExperimentPlanner with the memory estimate of a registered architecture "
                    "(kappa x its compute_conv_feature_map_size, kappa from plans/memory_calibration.json) and "
                    "writes nnUNetPlans_<ARCH> naming that architecture, so that 'nnUNetv2_train D CONFIG FOLD -p "
                    "nnUNetPlans_<ARCH> -tr TRAINER' trains it (stock nnUNetTrainer too). Extracts the fingerprint "
                    "if missing; preprocesses only configurations whose data does not exist (2d and 3d_fullres "
                    "reuse nnUNetPlans' preprocessed data).")
    s.add_argument("-d", required=True, help="dataset name or id")
    s.add_argument("--arch", required=True, help="registered architecture (nnunet-ext archs)")
    s.add_argument("--gpu-memory-target", type=float, default=8.0, metavar="GB",
                   help="GPU memory to plan for, in GB (nnU-Net's default 8)")
    s.add_argument("-c", nargs="+", default=list(DEFAULT_CONFIGURATIONS), metavar="CONFIG",
                   help="configurations to preprocess (default: 2d 3d_fullres 3d_lowres, where nnU-Net plans them)")
    s.add_argument("-np", type=int, default=1, help="processes for fingerprinting and preprocessing (default 1)")
    s.add_argument("--plans-name", default=None, help="plans identifier (default nnUNetPlans_<ARCH>)")
    s.add_argument("--no-preprocess", action="store_true", help="plan only; print the preprocessing commands")
    s.set_defaults(func=cmd_plan)
