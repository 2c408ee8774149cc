"""Region-of-interest coarse-to-fine inference with two trained nnU-Net models (``nnunet-ext predict-c2f``); the
stages on nnU-Net's predictor are in :mod:`nnunet_ext.c2f.stages`, the R = 4 coarse configuration of the two-stage
3D U-Net (``nnunet-ext make-coarse-config``) in :mod:`nnunet_ext.c2f.coarse_config`.

**ResDSN C2F** (resdsn_c2f Sec. 3.1-3.3, 4.1, Fig. 2), ``--mode c2f`` (default):

1. the coarse model over the whole volume with little overlap (``--coarse-step``, default 0.9 of the patch);
2. the bounding box of its foreground (all non-background labels, after removing small components) plus
   ``--margin-mm`` (converted per axis with the image's own spacing, clipped at the borders): Eq. 4's ``Crop``;
3. the fine model over that box (Eq. 4's ``Crop``) with large overlap (``-step_size``, default 0.5), on the image
   preprocessed with the fine model's plans over the WHOLE image (crop to nonzero, resample, normalise), i.e. the
   intensities the fine trainer saw (it crops nnU-Net's preprocessed cases); when both models preprocess alike
   (e.g. both on 3d_fullres) the coarse stage's preprocessed image is reused;
4. the fine segmentation pasted into a full-size background volume (Eq. 5's ``DeCrop``; the coarse mask is empty
   outside the box by construction), connected components smaller than ``--min-component-fraction`` (default 0.2,
   Sec. 4.2) of the total foreground removed, written with exactly the input's geometry.

No coarse foreground: ``--fallback coarse`` (default) keeps the coarse result (background); ``--fallback fine`` runs
the fine model on the whole volume. A notice names the case; ``c2f_times.json`` records ``fallback``.

**Two-stage 3D U-Net** (two_stage_unet Sec. 2.2, Fig. 2), ``--mode two-stage``: the coarse model is trained on the
configuration made by ``make-coarse-config`` (R = 4). Box 1: box of the coarse mask on the coarse (R-times
downsampled) grid + 2 coarse voxels, mapped onto the full-resolution image with the coarse configuration's actual
factor (:func:`coarse_grid_factor`); box 2: box of the upsampled coarse mask + 10 voxels. The fine model runs on
both boxes; the two pasted fine masks and the upsampled coarse mask are combined by majority voting (where all
three disagree, the fine mask of box 1 is kept).

Per-case times of both stages are printed and written to ``c2f_times.json`` beside the predictions. Bad input is
found before anything is written; each case is then written to a hidden temporary file in the output folder and
renamed when complete; a failing case stops the run with one line naming it and the finished cases stay
(``--continue_prediction`` skips them on the next run). ``nnunet-ext crossval-c2f`` (:mod:`nnunet_ext.c2f.crossval`)
scores a pair in nnU-Net's cross-validation.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunet_ext.boxes import Box, bbox_with_margin_mm, box_size, box_slices, expand_bbox, foreground_bbox
from nnunet_ext.c2f.coarse_config import TWO_STAGE_R, make_coarse_config  # noqa: F401  (re-exported)
from nnunet_ext.c2f.stages import (Preprocessed, StageOutput, coarse_grid_factor, preprocess,  # noqa: F401
                                   preprocessed_box_to_raw, raw_box_to_preprocessed, run_fine_in_box, run_stage,
                                   same_preprocessing)
from nnunet_ext.errors import UserError, dataset_name as _dataset_name
from nnunet_ext.checks.inputs import check_c2f_arguments, check_output_path, check_prediction_inputs
from nnunet_ext.trainers.c2f import DEFAULT_FINE_MARGIN_MM, TWO_STAGE_FINE_MARGIN_VOX

TIMES_FILE = "c2f_times.json"
#: two_stage_unet Sec. 2.2: box of the coarse mask + 2 voxels (coarse grid); the box of the upsampled mask gets
#: TWO_STAGE_FINE_MARGIN_VOX (10, as the fine stage's training boxes: trainers/c2f.py)
TWO_STAGE_COARSE_MARGIN_VOX = 2

_user_error = UserError  # one-line error, exit status 2 (nnunet_ext.errors)


# ------------------------------------------------------------------------------------------------ pure helpers
def remove_small_components(seg: np.ndarray, min_fraction: float) -> np.ndarray:
    """Set to background every connected component of the foreground (all labels > 0, face connectivity) whose
    size is below ``min_fraction`` of the total foreground (resdsn_c2f Sec. 4.2: 0.2). ``min_fraction <= 0``: no-op.
    Components are labelled and filtered by acvl_utils (``remove_components_cc3d``: connected-components-3d, for 2D
    and 3D arrays; ``remove_components``: scikit-image, any other number of axes)."""
    from acvl_utils.morphology.morphology_helper import remove_components, remove_components_cc3d

    if min_fraction <= 0:
        return seg
    fg = seg > 0
    total = int(fg.sum())
    if total == 0:
        return seg
    threshold = min_fraction * total  # components of at least this many voxels are kept
    if fg.ndim in (2, 3):
        keep = remove_components_cc3d(fg, threshold, "min", connectivity={2: 4, 3: 6}[fg.ndim])
    else:
        keep = remove_components(fg, threshold, "min", connectivity=1)
    if keep.sum() == total:
        return seg
    out = seg.copy()
    out[~keep] = 0
    return out


def paste(crop_seg: np.ndarray, box: Box, shape: Sequence[int], dtype=np.uint8) -> np.ndarray:
    """A full-size background volume of ``shape`` with ``crop_seg`` written into ``box``."""
    if tuple(crop_seg.shape) != box_size(box):
        raise ValueError(f"crop of shape {crop_seg.shape} does not fit box {box}")
    out = np.zeros(shape, dtype=dtype)
    out[box_slices(box)] = crop_seg
    return out


def majority_vote(fine1: np.ndarray, fine2: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """Per-voxel label that at least two of the three masks agree on; ``fine1`` where all three differ."""
    return np.where(fine2 == coarse, fine2, fine1)


def parse_model_spec(spec: str, what: str) -> Tuple[str, str, str]:
    """``TRAINER:CONFIG[:PLANS]`` -> (trainer, configuration, plans)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise _user_error(f"{what} {spec!r}: expected TRAINER:CONFIGURATION[:PLANS], e.g. "
                          f"nnUNetTrainerResDSN:3d_fullres")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else "nnUNetPlans"


# ------------------------------------------------------------------------------------------------ models
@dataclass
class ModelRef:
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
    """Validate a model (folder, plans, configuration, folds, checkpoints) without loading weights."""
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
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_ext.lookup import register_ext_trainers

    register_ext_trainers()
    p = nnUNetPredictor(tile_step_size=step, use_gaussian=True, use_mirroring=use_mirroring,
                        perform_everything_on_device=device.type == "cuda", device=device, verbose=False,
                        verbose_preprocessing=False, allow_tqdm=False)
    try:
        p.initialize_from_trained_model_folder(str(ref.folder), ref.folds, ref.checkpoint)
    except RuntimeError as e:
        if "Could not find requested nnunet trainer" in str(e):
            raise _user_error(f"{ref.what} model: trainer {ref.trainer} is not known to nnU-Net or nnunet-ext") \
                from None
        raise
    return p




# ------------------------------------------------------------------------------------------------ input listing
def list_cases(folder: Path, file_ending: str, num_channels: int) -> Dict[str, List[str]]:
    if not folder.is_dir():
        raise _user_error(f"input folder {folder} does not exist")
    files = sorted(p.name for p in folder.iterdir() if p.name.endswith(file_ending) and p.is_file())
    cases: Dict[str, List[str]] = {}
    for f in files:
        stem = f[: -len(file_ending)]
        if len(stem) < 6 or stem[-5] != "_" or not stem[-4:].isdigit():
            raise _user_error(f"input file {folder / f} is not named CASE_XXXX{file_ending} (channel XXXX)")
        cases.setdefault(stem[:-5], []).append(f)
    if not cases:
        raise _user_error(f"input folder {folder} has no images ending in {file_ending}")
    out = {}
    for case, fs in cases.items():
        want = [f"{case}_{c:04d}{file_ending}" for c in range(num_channels)]
        missing = [w for w in want if w not in fs]
        if missing:
            raise _user_error(f"case {case}: missing channel file {folder / missing[0]}")
        out[case] = [str(folder / w) for w in want]
    return out


# ------------------------------------------------------------------------------------------------ pipeline
FALLBACKS = ("coarse", "fine")


def _device(name: str):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise _user_error("-device cuda: no CUDA device is available")
    if name == "cpu":
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    return torch.device(name)


def predict_case(case: str, files: List[str], coarse_p, fine_p, reader, mode: str, margin_mm: float,
                 min_component_fraction: float, ts_margins: Tuple[int, int] = (TWO_STAGE_COARSE_MARGIN_VOX,
                                                                              TWO_STAGE_FINE_MARGIN_VOX),
                 fallback: str = "coarse"):
    """One case; returns (segmentation in the input's array geometry, image properties, record for the JSON)."""
    try:
        image, props = reader.read_images(files)
    except Exception as e:  # noqa: BLE001 - any reader failure is the user's file
        raise _user_error(f"cannot read {files[0]}: {type(e).__name__}: {e}") from None
    spacing = [float(s) for s in props["spacing"]]
    shape = image.shape[1:]
    rec = {"mode": mode, "shape": list(shape), "spacing": spacing}

    coarse = run_stage(coarse_p, image, spacing, want_preprocessed_seg=mode == "two-stage")
    coarse_seg = remove_small_components(coarse.seg, min_component_fraction)
    rec["coarse_s"] = coarse.seconds

    t0 = time.perf_counter()
    if mode == "c2f":
        box = bbox_with_margin_mm(coarse_seg > 0, margin_mm, spacing)
        boxes = [box] if box is not None else []
    else:
        fg = coarse_seg > 0
        if fg.any():
            pre_fg = remove_small_components(coarse.seg_preprocessed, min_component_fraction) > 0
            factor = coarse_grid_factor(pre_fg.shape, coarse.properties, coarse_p.plans_manager.transpose_backward)
            rec["coarse_factor"] = [round(f, 4) for f in factor]
            b_low = foreground_bbox(pre_fg)
            if b_low is None:  # the upsampled mask has foreground the coarse grid lost: use the upsampled box
                margin = [int(math.ceil(ts_margins[0] * f - 1e-6)) for f in factor]
                b1 = expand_bbox(foreground_bbox(fg), margin, shape)
            else:  # box 1 from the coarse grid's mask (+ margin there), scaled by the actual factor
                b_low = expand_bbox(b_low, [ts_margins[0]] * pre_fg.ndim, pre_fg.shape)
                b1 = preprocessed_box_to_raw(b_low, pre_fg.shape, coarse.properties,
                                             coarse_p.plans_manager.transpose_backward)
                b1 = expand_bbox(b1, [0] * len(shape), shape)  # clip
            b2 = expand_bbox(foreground_bbox(fg), [ts_margins[1]] * fg.ndim, shape)
            boxes = [b1, b2]
        else:
            boxes = []
    rec["boxes"] = [[list(b) for b in box] for box in boxes] or None

    if not boxes:
        rec["fallback"] = fallback
        if fallback == "coarse":
            print(f"{case}: the coarse model found no foreground: the output is the coarse result (background); "
                  f"--fallback fine would run the fine model on the whole volume")
            seg = coarse_seg.astype(np.uint8)
            rec["fine_voxels_fraction"] = 0.0
        else:
            print(f"{case}: the coarse model found no foreground: running the fine model on the whole volume "
                  f"(--fallback fine)")
            reuse = coarse.pre if coarse.pre is not None and same_preprocessing(coarse_p, fine_p) else None
            seg = run_stage(fine_p, image, spacing, pre=reuse).seg.astype(np.uint8)
            rec["fine_voxels_fraction"] = 1.0
    else:
        rec["fallback"] = None
        if coarse.pre is not None and same_preprocessing(coarse_p, fine_p):
            pre, rec["fine_preprocessing"] = coarse.pre, "reused the coarse stage's"
        else:
            pre, rec["fine_preprocessing"] = preprocess(fine_p, image, spacing), "whole image, fine plans"
        pasted = [run_fine_in_box(fine_p, pre, box, shape) for box in boxes]
        seg = pasted[0] if mode == "c2f" else majority_vote(pasted[0], pasted[1], coarse_seg.astype(np.uint8))
        rec["fine_voxels_fraction"] = float(max(np.prod(box_size(b)) for b in boxes) / np.prod(shape))
    seg = remove_small_components(seg, min_component_fraction)
    rec["fine_s"] = time.perf_counter() - t0
    rec["total_s"] = rec["coarse_s"] + rec["fine_s"]
    return seg, props, rec


def check_options(coarse_step: float, fine_step: float, margin_mm: float, min_component_fraction: float, mode: str,
                  fallback: str) -> None:
    for name, v in (("--coarse-step", coarse_step), ("-step_size", fine_step)):
        if not (0 < v <= 1):
            raise _user_error(f"{name} must be in (0, 1], got {v}")
    if not (margin_mm >= 0 and math.isfinite(margin_mm)):
        raise _user_error(f"--margin-mm must be >= 0, got {margin_mm}")
    if not (0 <= min_component_fraction < 1):
        raise _user_error(f"--min-component-fraction must be in [0, 1), got {min_component_fraction}")
    if mode not in ("c2f", "two-stage"):
        raise _user_error(f"--mode must be c2f or two-stage, got {mode!r}")
    if fallback not in FALLBACKS:
        raise _user_error(f"--fallback must be coarse or fine, got {fallback!r}")


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def run_cases(cases: Dict[str, List[str]], output_folder: Path, coarse_p, fine_p, reader, file_ending: str,
              record: dict, mode: str, margin_mm: float, min_component_fraction: float, ts_margins, fallback: str,
              continue_prediction: bool = False) -> dict:
    """Predict ``cases`` into ``output_folder``, one case at a time: each segmentation is written to a hidden
    temporary file in the output folder and renamed when complete (a killed run leaves no partial prediction);
    ``c2f_times.json`` is rewritten after every case. A failing case stops the run with one line naming it; the
    finished cases stay. ``continue_prediction``: cases whose prediction exists already are skipped (as
    ``nnUNetv2_predict --continue_prediction``)."""
    output_folder.mkdir(parents=True, exist_ok=True)
    for stale in output_folder.glob(f".*.c2f-partial{file_ending}"):
        stale.unlink()  # left by a killed run
    times_file = output_folder / TIMES_FILE
    if continue_prediction and times_file.is_file():
        try:
            record["cases"].update(json.loads(times_file.read_text()).get("cases", {}))
        except (OSError, json.JSONDecodeError):
            pass
    done = 0
    for case, files in cases.items():
        target = output_folder / f"{case}{file_ending}"
        if continue_prediction and target.is_file():
            print(f"{case}: prediction exists, skipped (--continue_prediction)")
            continue
        record["cases"].pop(case, None)
        tmp = output_folder / f".{case}.c2f-partial{file_ending}"
        try:
            seg, props, rec = predict_case(case, files, coarse_p, fine_p, reader, mode, margin_mm,
                                           min_component_fraction, ts_margins, fallback)
            reader.write_seg(seg, str(tmp), props)
            os.replace(tmp, target)
        except Exception as e:  # noqa: BLE001 - one line naming the case; the finished cases are kept
            msg = str(e).strip().splitlines()
            what = msg[-1] if isinstance(e, UserError) and msg else f"{type(e).__name__}: {msg[0] if msg else ''}"
            raise _user_error(f"case {case} failed ({what}); {done} case(s) finished in this run are kept in "
                              f"{output_folder} (rerun with --continue_prediction to skip them)") from None
        finally:
            if tmp.exists():
                tmp.unlink()
        done += 1
        record["cases"][case] = rec
        secs = [r["total_s"] for r in record["cases"].values()]
        record["mean_total_s"] = float(np.mean(secs))
        _write_json_atomic(times_file, record)
        if rec["fallback"] == "coarse":
            how = "not run (no coarse foreground: coarse result kept)"
        elif rec["fallback"] == "fine":
            how = "on the whole volume (no coarse foreground)"
        else:
            how = f"on {len(rec['boxes'])} box(es), {100 * rec['fine_voxels_fraction']:.1f}% of the volume"
        print(f"{case}: coarse {rec['coarse_s']:.2f} s, fine {rec['fine_s']:.2f} s, total {rec['total_s']:.2f} s; "
              f"fine stage {how}")
    if not (output_folder / TIMES_FILE).is_file():
        _write_json_atomic(times_file, record)
    return record


def pair_record(coarse: ModelRef, fine: ModelRef, dev, mode: str, coarse_step: float, fine_step: float,
                margin_mm: float, ts_margins, min_component_fraction: float, fallback: str) -> dict:
    return {"mode": mode, "coarse": f"{coarse.trainer}:{coarse.configuration}:{coarse.plans_name}",
            "fine": f"{fine.trainer}:{fine.configuration}:{fine.plans_name}",
            "coarse_folds": coarse.folds, "fine_folds": fine.folds, "device": str(dev),
            "coarse_step": coarse_step, "fine_step": fine_step,
            "margin_mm": margin_mm if mode == "c2f" else None,
            "two_stage_margins_vox": list(ts_margins) if mode == "two-stage" else None,
            "min_component_fraction": min_component_fraction, "fallback": fallback, "cases": {}}


def predict_c2f(input_folder, output_folder, dataset, coarse_spec: str, fine_spec: str, folds=None,
                margin_mm: float = DEFAULT_FINE_MARGIN_MM, coarse_step: float = 0.9, fine_step: float = 0.5,
                min_component_fraction: float = 0.2, mode: str = "c2f", device: str = "auto",
                checkpoint: str = "checkpoint_final.pth", coarse_dataset=None, disable_mirroring: bool = False,
                ts_margins: Tuple[int, int] = (TWO_STAGE_COARSE_MARGIN_VOX, TWO_STAGE_FINE_MARGIN_VOX),
                fallback: str = "coarse", continue_prediction: bool = False) -> dict:
    """The whole pipeline; returns the content of the times JSON. Raises ``UserError`` for bad input (found before
    anything is written) and for a failing case (the cases finished before it are kept)."""
    from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name

    input_folder, output_folder = Path(input_folder), Path(output_folder)
    folds = check_c2f_arguments(folds, output_folder)  # nnunet_ext.checks.inputs: folds, output path
    check_options(coarse_step, fine_step, margin_mm, min_component_fraction, mode, fallback)
    coarse = resolve_model("coarse", coarse_dataset if coarse_dataset is not None else dataset, coarse_spec, folds,
                           checkpoint)
    fine = resolve_model("fine", dataset, fine_spec, folds, checkpoint)
    check_compatible(coarse, fine)
    check_prediction_inputs(input_folder, coarse, fine)  # nnunet_ext.checks.inputs: every file read completely, finite, ...
    dj = fine.dataset_json
    cases = list_cases(input_folder, dj["file_ending"], len(dj.get("channel_names", dj.get("modality", {}))))
    if output_folder.exists() and not output_folder.is_dir():
        raise _user_error(f"output {output_folder} exists and is not a folder")
    dev = _device(device)

    coarse_p = load_predictor(coarse, coarse_step, dev, not disable_mirroring)
    fine_p = load_predictor(fine, fine_step, dev, not disable_mirroring)
    reader = recursive_find_reader_writer_by_name(coarse.plans["image_reader_writer"])()
    record = pair_record(coarse, fine, dev, mode, coarse_step, fine_step, margin_mm, ts_margins,
                         min_component_fraction, fallback)
    run_cases(cases, output_folder, coarse_p, fine_p, reader, dj["file_ending"], record, mode, margin_mm,
              min_component_fraction, ts_margins, fallback, continue_prediction)
    print(f"wrote {len(cases)} predictions and {TIMES_FILE} to {output_folder}")
    return record



# ------------------------------------------------------------------------------------------------ CLI
def cmd_predict_c2f(args) -> int:
    check_output_path(args.o, "output folder")  # nnunet_ext.checks.inputs: the one rule for output paths
    predict_c2f(args.i, args.o, args.d, args.coarse, args.fine, folds=args.f, margin_mm=args.margin_mm,
                coarse_step=args.coarse_step, fine_step=args.step_size,
                min_component_fraction=args.min_component_fraction, mode=args.mode, device=args.device,
                checkpoint=args.chk, coarse_dataset=args.coarse_dataset, disable_mirroring=args.disable_tta,
                ts_margins=tuple(args.two_stage_margins), fallback=args.fallback,
                continue_prediction=args.continue_prediction)
    return 0


def add_pair_arguments(s) -> None:
    """Options shared by ``predict-c2f`` and ``crossval-c2f``, spelled as ``nnUNetv2_predict`` spells them where it
    has them (``-f``, ``-step_size``, ``-chk``, ``-device``, ``--disable_tta``); the older spellings still work
    (hidden aliases)."""
    import argparse

    s.add_argument("-d", required=True, help="dataset name or id")
    s.add_argument("--coarse", required=True, metavar="TRAINER:CONFIG[:PLANS]", help="the coarse model")
    s.add_argument("--fine", required=True, metavar="TRAINER:CONFIG[:PLANS]", help="the fine model")
    s.add_argument("--mode", choices=("c2f", "two-stage"), default="c2f",
                   help="c2f: ResDSN C2F (one box + margin-mm); two-stage: two boxes + majority vote with the "
                        "upsampled coarse mask (coarse model on a make-coarse-config configuration)")
    s.add_argument("--fallback", choices=FALLBACKS, default="coarse",
                   help="when the coarse model finds no foreground: coarse = keep its result (background; "
                        "default), fine = run the fine model on the whole volume (a box-trained fine model "
                        "predicts false positives there)")
    s.add_argument("--margin-mm", type=float, default=DEFAULT_FINE_MARGIN_MM,
                   help=f"margin around the coarse box in mm (c2f mode). Default {DEFAULT_FINE_MARGIN_MM:g}")
    s.add_argument("--coarse-step", type=float, default=0.9,
                   help="tile step of the coarse model, fraction of the patch (little overlap). Default 0.9")
    s.add_argument("-step_size", type=float, default=0.5,
                   help="tile step of the fine model (large overlap; nnUNetv2_predict's -step_size). Default 0.5")
    s.add_argument("--fine-step", dest="step_size", type=float, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    s.add_argument("--min-component-fraction", type=float, default=0.2,
                   help="remove components smaller than this fraction of the total foreground (0: keep all). "
                        "Default 0.2")
    s.add_argument("--two-stage-margins", type=int, nargs=2, default=[TWO_STAGE_COARSE_MARGIN_VOX,
                                                                      TWO_STAGE_FINE_MARGIN_VOX],
                   metavar=("COARSE_VOX", "FINE_VOX"), help="two-stage box margins. Default 2 10")
    s.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint file name. Default checkpoint_final.pth")
    s.add_argument("--chk", dest="chk", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    s.add_argument("-device", choices=("auto", "cpu", "cuda"), default="auto", help="Default: cuda if available")
    s.add_argument("--device", dest="device", choices=("auto", "cpu", "cuda"), default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    s.add_argument("--disable_tta", action="store_true", help="no mirroring test-time augmentation")
    s.add_argument("--disable-tta", dest="disable_tta", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    s.add_argument("--continue_prediction", "--c", action="store_true",
                   help="skip cases whose prediction exists already (as nnUNetv2_predict)")


def register_cli(subparsers) -> None:
    s = subparsers.add_parser(
        "predict-c2f", help="coarse-to-fine inference with two trained models (ResDSN C2F / two-stage U-Net)",
        description="Coarse model over the whole volume (large tile step), fine model over the box of its "
                    "foreground + margin (small tile step), pasted back, small components removed, written with "
                    "the input's geometry. Per-case times go to c2f_times.json beside the predictions. Each case "
                    "is written atomically; a failing case stops the run and keeps the finished ones. "
                    "--save_probabilities is not supported (see docs/c2f.md).")
    s.add_argument("-i", required=True, help="input folder (CASE_XXXX.nii.gz, nnU-Net's raw naming)")
    s.add_argument("-o", required=True, help="output folder")
    s.add_argument("-f", nargs="+", default=None, metavar="FOLD",
                   help="folds of both models (default: every fold with a checkpoint)")
    add_pair_arguments(s)
    s.add_argument("--coarse-dataset", default=None,
                   help="look the coarse model up in this dataset's results instead of -d's (e.g. a copy of the "
                        "dataset under another id); its plans must name the same dataset, labels and channels as "
                        "the fine model's, or predict-c2f refuses")
    s.set_defaults(func=cmd_predict_c2f)

