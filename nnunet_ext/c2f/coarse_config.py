"""``nnunet-ext make-coarse-config``: the R-times downsampled coarse configuration of the two-stage 3D U-Net
(two_stage_unet Sec. 2.1, R = 4), added to the plans as an ``inherits_from`` configuration; the coarse model of
``nnunet-ext predict-c2f --mode two-stage`` is trained on it."""
from __future__ import annotations

import json
import math
import os
from copy import deepcopy
from typing import Optional

import numpy as np

from nnunet_ext.errors import UserError, dataset_name as _dataset_name, preprocessed_file

#: two_stage_unet Sec. 2.1: decimation factor
TWO_STAGE_R = 4

_user_error = UserError  # one-line error, exit status 2 (nnunet_ext.errors)


def make_coarse_config(dataset, plans_name: str = "nnUNetPlans", source: str = "3d_fullres",
                       factor: float = TWO_STAGE_R, name: Optional[str] = None, overwrite: bool = False) -> str:
    """Add a configuration ``name`` (default ``3d_coarse<R>``) to the plans: ``inherits_from`` ``source`` with
    ``factor`` times its spacing (two_stage_unet Sec. 2.1: R = 4) and the patch size, network topology and batch
    size that nnU-Net's ExperimentPlanner derives for that spacing and the correspondingly smaller median shape.
    Returns the configuration name; preprocess it with ``nnUNetv2_preprocess -d D -c NAME``."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.utilities.json_export import recursive_fix_for_json_export

    ds = _dataset_name(dataset)
    if not (factor > 1 and math.isfinite(factor)):
        raise _user_error(f"--factor must be > 1, got {factor}")
    name = name or f"3d_coarse{factor:g}".replace(".", "p")
    plans_file = preprocessed_file(ds, f"{plans_name}.json")
    plans = json.loads(plans_file.read_text())
    confs = plans["configurations"]
    if source not in confs:
        raise _user_error(f"configuration {source!r} does not exist in {plans_file} (has: {', '.join(confs)})")
    if name in confs and not overwrite:
        raise _user_error(f"configuration {name!r} exists already in {plans_file} (use --overwrite)")
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    src = PlansManager(plans).get_configuration(source).configuration
    spacing = [float(s) * factor for s in src["spacing"]]
    if len(spacing) != 3:
        raise _user_error(f"configuration {source!r} is not 3D")
    median = [max(1, int(round(s / factor))) for s in src["median_image_size_in_voxels"]]
    try:
        planner = ExperimentPlanner(ds, plans_name=plans_name)
    except (RuntimeError, OSError, FileNotFoundError) as e:
        raise _user_error(f"cannot plan for {ds}: {str(e).splitlines()[0]}") from None
    n_train = planner.dataset_json.get("numTraining", 1)
    # nnU-Net 2.8.1's planner calls torch.set_num_threads(nnUNet_n_proc_DA), which fails for 0
    old_da = os.environ.get("nnUNet_n_proc_DA")
    if old_da is not None and old_da.strip() == "0":
        os.environ["nnUNet_n_proc_DA"] = "1"
    try:
        new = planner.get_plans_for_configuration(spacing, median, f"{plans_name}_{name}",
                                                  float(np.prod(median, dtype=np.float64) * n_train), {})
    finally:
        if old_da is not None:
            os.environ["nnUNet_n_proc_DA"] = old_da
    entry = {"inherits_from": source}
    for k in ("data_identifier", "batch_size", "patch_size", "median_image_size_in_voxels", "spacing",
              "architecture"):
        entry[k] = new[k]
    entry["batch_dice"] = False
    # keep the source's network class (e.g. a residual-encoder plan); the topology comes from the planner
    entry["architecture"] = deepcopy(new["architecture"])
    entry["architecture"]["network_class_name"] = src["architecture"]["network_class_name"]
    if "n_blocks_per_stage" in src["architecture"]["arch_kwargs"]:
        n = entry["architecture"]["arch_kwargs"]["n_stages"]
        entry["architecture"]["arch_kwargs"]["n_blocks_per_stage"] = \
            list(src["architecture"]["arch_kwargs"]["n_blocks_per_stage"])[:n]
        entry["architecture"]["arch_kwargs"].pop("n_conv_per_stage", None)
    entry["c2f_note"] = f"nnunet-ext make-coarse-config: {source} at {factor:g}x spacing (two_stage_unet R)"
    confs[name] = entry
    recursive_fix_for_json_export(plans)
    tmp = plans_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(plans, indent=4))
    os.replace(tmp, plans_file)
    return name


def cmd_make_coarse_config(args) -> int:
    name = make_coarse_config(args.d, args.plans, args.source, args.factor, args.name, args.overwrite)
    print(name)
    if args.preprocess:
        from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess
        from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id

        preprocess([convert_dataset_name_to_id(_dataset_name(args.d))], args.plans, [name], [args.np])
    else:
        print(f"next: nnUNetv2_preprocess -d {args.d} -plans_name {args.plans} -c {name}")
    return 0


def register_cli(subparsers, name: str, help: str) -> None:
    s = subparsers.add_parser(
        name, help=help,
        description="Adds a configuration inheriting from 3d_fullres (nnU-Net's inherits_from) with R times its "
                    "spacing and a patch size/topology planned for it. Then preprocess and train it as usual.")
    s.add_argument("-d", required=True, help="dataset name or id")
    s.add_argument("--plans", default="nnUNetPlans", help="plans identifier. Default nnUNetPlans")
    s.add_argument("--source", default="3d_fullres", help="configuration to inherit from. Default 3d_fullres")
    s.add_argument("--factor", type=float, default=TWO_STAGE_R, help="decimation factor R. Default 4")
    s.add_argument("--name", default=None, help="configuration name. Default 3d_coarse<R>")
    s.add_argument("--overwrite", action="store_true", help="replace an existing configuration of that name")
    s.add_argument("--preprocess", action="store_true", help="also run nnU-Net's preprocessing for it")
    s.add_argument("-np", type=int, default=1, help="processes for --preprocess. Default 1")
    s.set_defaults(func=cmd_make_coarse_config)
