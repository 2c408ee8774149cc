"""The two trained models of a coarse-to-fine pair: ``TRAINER:CONFIG[:PLANS]`` specs, each model validated in
``nnUNet_results`` (folder, plans, configuration, folds, checkpoints) before any weights are loaded, the pair's
compatibility (dataset, labels, channels), the torch device and nnU-Net's predictor of each model."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from nnunet_ext.errors import UserError, dataset_name as _dataset_name

_user_error = UserError  # one-line error, exit status 2 (nnunet_ext.errors)


def parse_model_spec(spec: str, what: str) -> Tuple[str, str, str]:
    """``TRAINER:CONFIG[:PLANS]`` -> (trainer, configuration, plans)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise _user_error(f"{what} {spec!r}: expected TRAINER:CONFIGURATION[:PLANS], e.g. "
                          f"nnUNetTrainerResDSN:3d_fullres")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else "nnUNetPlans"


@dataclass
class ModelRef:
    """One trained model of the pair, validated; ``plans`` and ``dataset_json`` are its folder's files."""
    what: str  # "coarse" / "fine"
    dataset: str
    trainer: str
    configuration: str
    plans_name: str
    folder: Path
    folds: List
    checkpoint: str
    plans: dict = field(default_factory=dict)
    dataset_json: dict = field(default_factory=dict)


def resolve_model(what: str, dataset, spec: str, folds: Optional[Sequence[str]], checkpoint: str) -> ModelRef:
    """Validate a model (folder, plans, configuration, folds, checkpoints) without loading weights: a cascade
    configuration (a network that takes a previous stage's segmentation, which the pair does not provide) and a
    truncated or corrupt checkpoint (:func:`nnunet_ext.checks.check_checkpoint`) are refused."""
    from nnunet_ext.checks import check_checkpoint, check_not_cascade

    from nnunetv2.utilities.file_path_utilities import get_output_folder

    trainer, config, plans_name = parse_model_spec(spec, f"--{what}")
    ds = _dataset_name(dataset)
    if not os.environ.get("nnUNet_results"):
        raise _user_error("nnUNet_results is not set: it must point at the folder with the trained models")
    folder = Path(get_output_folder(ds, trainer, plans_name, config))
    if not folder.is_dir():
        pre = os.environ.get("nnUNet_preprocessed")
        plans_file = Path(pre) / ds / f"{plans_name}.json" if pre else None
        if plans_file is not None and plans_file.is_file():
            try:
                confs = json.loads(plans_file.read_text()).get("configurations", {})
            except (OSError, json.JSONDecodeError):
                confs = None
            if confs is not None and config not in confs:
                raise _user_error(f"{what} model: configuration {config!r} does not exist in {plans_file} "
                                  f"(has: {', '.join(confs)})")
        parent = folder.parent
        have = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
        hint = f" (trained there: {', '.join(have)})" if have else f" ({parent} has no trained models)"
        raise _user_error(f"{what} model folder {folder} does not exist{hint}")
    for name in ("plans.json", "dataset.json"):
        if not (folder / name).is_file():
            raise _user_error(f"{what} model: {folder / name} is missing")
    try:
        plans = json.loads((folder / "plans.json").read_text())
        dataset_json = json.loads((folder / "dataset.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise _user_error(f"{what} model: cannot read {folder}/plans.json or dataset.json: {e}") from None
    if config not in plans.get("configurations", {}):
        raise _user_error(f"{what} model: configuration {config!r} does not exist in {folder / 'plans.json'} "
                          f"(has: {', '.join(plans.get('configurations', {}))})")
    check_not_cascade(plans, config, f"{what} model {spec}", "the coarse-to-fine pipeline does not provide")
    if folds:
        use = [f if f == "all" else int(f) for f in folds]
    else:
        use = sorted(int(p.name[5:]) for p in folder.glob("fold_*")
                     if p.name[5:].isdigit() and (p / checkpoint).is_file())
        if not use:
            raise _user_error(f"{what} model: no fold of {folder} has {checkpoint}")
    for f in use:
        ck = folder / f"fold_{f}" / checkpoint
        if not ck.is_file():
            raise _user_error(f"{what} model: fold {f} missing: {ck} does not exist")
    for f in use:
        check_checkpoint(folder / f"fold_{f}" / checkpoint)
    return ModelRef(what, ds, trainer, config, plans_name, folder, use, checkpoint, plans, dataset_json)


def check_compatible(coarse: ModelRef, fine: ModelRef) -> None:
    """Coarse and fine must come from the same dataset with the same labels and input channels."""
    dc, df = coarse.plans.get("dataset_name"), fine.plans.get("dataset_name")
    if dc != df:
        raise _user_error(f"coarse model was trained on {dc} ({coarse.folder}) but fine model on {df} "
                          f"({fine.folder})")
    lc, lf = coarse.dataset_json.get("labels"), fine.dataset_json.get("labels")
    if lc != lf:
        raise _user_error(f"coarse and fine models have different label sets: {lc} ({coarse.folder}) vs {lf} "
                          f"({fine.folder})")
    cc = coarse.dataset_json.get("channel_names", coarse.dataset_json.get("modality"))
    cf = fine.dataset_json.get("channel_names", fine.dataset_json.get("modality"))
    if cc != cf:
        raise _user_error(f"coarse and fine models have different input channels: {cc} vs {cf}")


def load_predictor(ref: ModelRef, step: float, device, use_mirroring: bool = True):
    """nnU-Net's predictor of ``ref`` (Gaussian-weighted sliding window at tile step ``step``), our trainers
    registered; UserError when nnU-Net does not know the model's trainer."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_ext.lookup import missing_trainer, register_ext_trainers, unknown_trainer_message

    register_ext_trainers()
    p = nnUNetPredictor(tile_step_size=step, use_gaussian=True, use_mirroring=use_mirroring,
                        perform_everything_on_device=device.type == "cuda", device=device, verbose=False,
                        verbose_preprocessing=False, allow_tqdm=False)
    try:
        p.initialize_from_trained_model_folder(str(ref.folder), ref.folds, ref.checkpoint)
    except RuntimeError as e:
        if missing_trainer(e) is not None:
            raise _user_error(f"{ref.what} model: {unknown_trainer_message(ref.trainer)}") from None
        raise
    return p


def torch_device(name: str):
    """``auto`` / ``cpu`` / ``cuda`` -> a torch device (UserError for cuda without one); on the CPU, torch uses
    ``OMP_NUM_THREADS`` threads."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise _user_error("-device cuda: no CUDA device is available")
    if name == "cpu":
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    return torch.device(name)
