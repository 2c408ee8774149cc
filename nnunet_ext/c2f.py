"""Region-of-interest coarse-to-fine inference with two trained nnU-Net models (``nnunet-ext predict-c2f``) and the
R = 4 coarse configuration of the two-stage 3D U-Net (``nnunet-ext make-coarse-config``).

**ResDSN C2F** (resdsn_c2f Sec. 3.1-3.3, 4.1, Fig. 2), ``--mode c2f`` (default):

1. the coarse model over the whole volume with little overlap (``--coarse-step``, default 0.9 of the patch);
2. the bounding box of its foreground (all non-background labels, after removing small components) plus
   ``--margin-mm`` (converted per axis with the image's own spacing, clipped at the borders): Eq. 4's ``Crop``;
3. the fine model over that crop of the RAW image with large overlap (``--fine-step``, default 0.5). The fine
   predictor preprocesses the crop itself with its own plans, so the two stages may use different spacings;
4. the fine segmentation pasted into a full-size background volume (Eq. 5's ``DeCrop``; the coarse mask is empty
   outside the box by construction), connected components smaller than ``--min-component-fraction`` (default 0.2,
   Sec. 4.2) of the total foreground removed, written with exactly the input's geometry.

No coarse foreground: the fine model runs on the whole volume (a notice is printed and recorded).

**Two-stage 3D U-Net** (two_stage_unet Sec. 2.2, Fig. 2), ``--mode two-stage``: the coarse model is trained on the
configuration made by ``make-coarse-config`` (R = 4). Box 1: box of the coarse mask on the coarse (R-times
downsampled) grid + 2 coarse voxels, scaled by R onto the full-resolution image; box 2: box of the upsampled coarse
mask + 10 voxels. The fine model runs on both crops; the two pasted fine masks and the upsampled coarse mask are
combined by majority voting (where all three disagree, the fine mask of box 1 is kept).

Per-case times of both stages are printed and written to ``c2f_times.json`` beside the predictions. Predictions are
written to a hidden temporary folder next to the output folder and moved in only when every case succeeded, so bad
input leaves nothing behind.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunet_ext.errors import UserError, dataset_name as _dataset_name
from nnunet_ext.inputs import check_prediction_inputs, check_c2f_arguments as check_arguments
from nnunet_ext.trainers.c2f import (DEFAULT_FINE_MARGIN_MM, TWO_STAGE_FINE_MARGIN_VOX, Box, bbox_with_margin_mm,
                                     box_size, box_slices, expand_bbox, foreground_bbox, scale_bbox)

TIMES_FILE = "c2f_times.json"
#: two_stage_unet Sec. 2.2: box of the coarse mask + 2 voxels (coarse grid); the box of the upsampled mask gets
#: TWO_STAGE_FINE_MARGIN_VOX (10, as the fine stage's training boxes: trainers/c2f.py)
TWO_STAGE_COARSE_MARGIN_VOX = 2
#: two_stage_unet Sec. 2.1: decimation factor
TWO_STAGE_R = 4

_user_error = UserError  # one-line error, exit status 2 (nnunet_ext.errors)


# ------------------------------------------------------------------------------------------------ pure helpers
def remove_small_components(seg: np.ndarray, min_fraction: float) -> np.ndarray:
    """Set to background every connected component of the foreground (all labels > 0, face connectivity) whose
    size is below ``min_fraction`` of the total foreground (resdsn_c2f Sec. 4.2: 0.2). ``min_fraction <= 0``: no-op."""
    from scipy import ndimage

    if min_fraction <= 0:
        return seg
    fg = seg > 0
    total = int(fg.sum())
    if total == 0:
        return seg
    lab, n = ndimage.label(fg)
    if n <= 1:
        return seg
    sizes = np.bincount(lab.ravel())
    small = np.flatnonzero(sizes < min_fraction * total)
    small = small[small > 0]
    if small.size == 0:
        return seg
    out = seg.copy()
    out[np.isin(lab, small)] = 0
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

    from nnunet_ext.cli import register_ext_trainers

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


@dataclass
class StageOutput:
    seg: np.ndarray  # in the geometry of the (raw) input given to the stage
    seg_preprocessed: Optional[np.ndarray]  # argmax on the stage's preprocessed grid (transposed, cropped to nonzero)
    properties: dict
    seconds: float


def run_stage(predictor, image: np.ndarray, spacing: Sequence[float], want_preprocessed_seg: bool = False) \
        -> StageOutput:
    """nnU-Net's own preprocessing, sliding-window prediction and export to the input's shape, for one image."""
    import torch
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    t0 = time.perf_counter()
    pm, cm = predictor.plans_manager, predictor.configuration_manager
    pre = cm.preprocessor_class(verbose=False)
    data, _, props = pre.run_case_npy(image, None, {"spacing": list(spacing)}, pm, cm, predictor.dataset_json)
    logits = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(data)).cpu()
    lowres = None
    if want_preprocessed_seg:
        lowres = predictor.label_manager.convert_logits_to_segmentation(logits)
        lowres = lowres.numpy() if hasattr(lowres, "numpy") else np.asarray(lowres)
    seg = convert_predicted_logits_to_segmentation_with_correct_shape(logits, pm, cm, predictor.label_manager, props,
                                                                     return_probabilities=False)
    return StageOutput(np.asarray(seg), lowres, props, time.perf_counter() - t0)


def preprocessed_box_to_raw(box: Box, pre_shape: Sequence[int], props: dict, transpose_backward: Sequence[int]) \
        -> Box:
    """A box on a stage's preprocessed grid of ``pre_shape`` (transposed, cropped to the nonzero region, resampled)
    -> the raw input's axes: scaled onto the cropped region (``scale_bbox``), shifted by nnU-Net's crop, transposed
    back."""
    scaled = scale_bbox(box, pre_shape, props["shape_after_cropping_and_before_resampling"])
    shifted = tuple((lo + int(c[0]), hi + int(c[0])) for (lo, hi), c in zip(scaled, props["bbox_used_for_cropping"]))
    return tuple(shifted[i] for i in transpose_backward)


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


def check_readable(cases: Dict[str, List[str]]) -> None:
    """Read every input file's header before any prediction (formats SimpleITK knows; others are read later)."""
    import SimpleITK as sitk

    for files in cases.values():
        for f in files:
            r = sitk.ImageFileReader()
            r.SetFileName(f)
            try:
                r.ReadImageInformation()
            except RuntimeError as e:
                msg = str(e).strip().splitlines()
                if "Unable to determine ImageIO reader" in str(e) and not Path(f).stat().st_size == 0:
                    # not a SimpleITK format (e.g. a reader of nnU-Net's for .png/.tif): leave it to that reader
                    if not f.endswith((".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")):
                        continue
                raise _user_error(f"cannot read {f}: {msg[-1] if msg else 'unreadable'}") from None


# ------------------------------------------------------------------------------------------------ pipeline
def _device(name: str):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise _user_error("--device cuda: no CUDA device is available")
    if name == "cpu":
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    return torch.device(name)


def predict_case(case: str, files: List[str], coarse_p, fine_p, reader, mode: str, margin_mm: float,
                 min_component_fraction: float, ts_margins: Tuple[int, int] = (TWO_STAGE_COARSE_MARGIN_VOX,
                                                                              TWO_STAGE_FINE_MARGIN_VOX)):
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
            # box 1 from the coarse grid's mask with the same small-component removal as the upsampled one
            pre_fg = remove_small_components(coarse.seg_preprocessed, min_component_fraction) > 0
            b_low = foreground_bbox(pre_fg)
            if b_low is None:  # the upsampled mask has foreground the coarse grid lost: use the upsampled box
                b1 = expand_bbox(foreground_bbox(fg), [ts_margins[0] * TWO_STAGE_R] * fg.ndim, shape)
            else:
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
        print(f"{case}: the coarse model found no foreground: running the fine model on the whole volume")
        rec["fallback_whole_volume"] = True
        fine = run_stage(fine_p, image, spacing)
        seg = fine.seg.astype(np.uint8)
        rec["fine_voxels_fraction"] = 1.0
    else:
        rec["fallback_whole_volume"] = False
        pasted = []
        for box in boxes:
            crop = np.ascontiguousarray(image[(slice(None), *box_slices(box))])
            fine = run_stage(fine_p, crop, spacing)
            pasted.append(paste(fine.seg.astype(np.uint8), box, shape))
        seg = pasted[0] if mode == "c2f" else majority_vote(pasted[0], pasted[1], coarse_seg.astype(np.uint8))
        rec["fine_voxels_fraction"] = float(max(np.prod(box_size(b)) for b in boxes) / np.prod(shape))
    seg = remove_small_components(seg, min_component_fraction)
    rec["fine_s"] = time.perf_counter() - t0
    rec["total_s"] = rec["coarse_s"] + rec["fine_s"]
    return seg, props, rec


def predict_c2f(input_folder, output_folder, dataset, coarse_spec: str, fine_spec: str, folds=None,
                margin_mm: float = DEFAULT_FINE_MARGIN_MM, coarse_step: float = 0.9, fine_step: float = 0.5,
                min_component_fraction: float = 0.2, mode: str = "c2f", device: str = "auto",
                checkpoint: str = "checkpoint_final.pth", coarse_dataset=None, disable_mirroring: bool = False,
                ts_margins: Tuple[int, int] = (TWO_STAGE_COARSE_MARGIN_VOX, TWO_STAGE_FINE_MARGIN_VOX)) -> dict:
    """The whole pipeline; returns the content of the times JSON. Raises ``UserError`` for bad input (nothing is
    written in that case)."""
    from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name

    input_folder, output_folder = Path(input_folder), Path(output_folder)
    folds = check_arguments(folds, output_folder)  # nnunet_ext.inputs: folds, output path
    for name, v, lo, hi in (("--coarse-step", coarse_step, 0, 1), ("--fine-step", fine_step, 0, 1)):
        if not (lo < v <= hi):
            raise _user_error(f"{name} must be in (0, 1], got {v}")
    if not (margin_mm >= 0 and math.isfinite(margin_mm)):
        raise _user_error(f"--margin-mm must be >= 0, got {margin_mm}")
    if not (0 <= min_component_fraction < 1):
        raise _user_error(f"--min-component-fraction must be in [0, 1), got {min_component_fraction}")
    if mode not in ("c2f", "two-stage"):
        raise _user_error(f"--mode must be c2f or two-stage, got {mode!r}")

    coarse = resolve_model("coarse", coarse_dataset if coarse_dataset is not None else dataset, coarse_spec, folds,
                           checkpoint)
    fine = resolve_model("fine", dataset, fine_spec, folds, checkpoint)
    check_compatible(coarse, fine)
    check_prediction_inputs(input_folder, coarse, fine)  # nnunet_ext.inputs: before any prediction
    dj = fine.dataset_json
    cases = list_cases(input_folder, dj["file_ending"], len(dj.get("channel_names", dj.get("modality", {}))))
    check_readable(cases)
    if output_folder.exists() and not output_folder.is_dir():
        raise _user_error(f"output {output_folder} exists and is not a folder")
    dev = _device(device)

    coarse_p = load_predictor(coarse, coarse_step, dev, not disable_mirroring)
    fine_p = load_predictor(fine, fine_step, dev, not disable_mirroring)
    rw_class = recursive_find_reader_writer_by_name(coarse.plans["image_reader_writer"])
    reader = rw_class()

    output_folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_folder.name}.c2f-", dir=output_folder.parent))
    record = {"mode": mode, "coarse": f"{coarse.trainer}:{coarse.configuration}:{coarse.plans_name}",
              "fine": f"{fine.trainer}:{fine.configuration}:{fine.plans_name}",
              "coarse_folds": coarse.folds, "fine_folds": fine.folds, "device": str(dev),
              "coarse_step": coarse_step, "fine_step": fine_step,
              "margin_mm": margin_mm if mode == "c2f" else None,
              "two_stage_margins_vox": list(ts_margins) if mode == "two-stage" else None,
              "min_component_fraction": min_component_fraction, "cases": {}}
    try:
        for case, files in cases.items():
            seg, props, rec = predict_case(case, files, coarse_p, fine_p, reader, mode, margin_mm,
                                           min_component_fraction, ts_margins)
            reader.write_seg(seg, str(tmp / f"{case}{dj['file_ending']}"), props)
            record["cases"][case] = rec
            how = "whole volume (no coarse foreground)" if rec["fallback_whole_volume"] else \
                f"{len(rec['boxes'])} box(es), {100 * rec['fine_voxels_fraction']:.1f}% of the volume"
            print(f"{case}: coarse {rec['coarse_s']:.2f} s, fine {rec['fine_s']:.2f} s, total {rec['total_s']:.2f} s; "
                  f"fine stage on {how}")
        secs = [r["total_s"] for r in record["cases"].values()]
        record["mean_total_s"] = float(np.mean(secs))
        (tmp / TIMES_FILE).write_text(json.dumps(record, indent=2))
        output_folder.mkdir(parents=True, exist_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, output_folder / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {len(cases)} predictions and {TIMES_FILE} to {output_folder}")
    return record


# ------------------------------------------------------------------------------------------------ coarse config
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
    pre = os.environ.get("nnUNet_preprocessed")
    if not pre:
        raise _user_error("nnUNet_preprocessed is not set")
    plans_file = Path(pre) / ds / f"{plans_name}.json"
    if not plans_file.is_file():
        raise _user_error(f"plans file {plans_file} does not exist (run nnUNetv2_plan_and_preprocess first)")
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


# ------------------------------------------------------------------------------------------------ CLI
def cmd_predict_c2f(args) -> int:
    predict_c2f(args.i, args.o, args.d, args.coarse, args.fine, folds=args.f, margin_mm=args.margin_mm,
                coarse_step=args.coarse_step, fine_step=args.fine_step,
                min_component_fraction=args.min_component_fraction, mode=args.mode, device=args.device,
                checkpoint=args.chk, coarse_dataset=args.coarse_dataset, disable_mirroring=args.disable_tta,
                ts_margins=tuple(args.two_stage_margins))
    return 0


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


def register_cli(subparsers) -> None:
    s = subparsers.add_parser(
        "predict-c2f", help="coarse-to-fine inference with two trained models (ResDSN C2F / two-stage U-Net)",
        description="Coarse model over the whole volume (large tile step), fine model over the box of its "
                    "foreground + margin (small tile step), pasted back, small components removed, written with "
                    "the input's geometry. Per-case times go to c2f_times.json beside the predictions.")
    s.add_argument("-i", required=True, help="input folder (CASE_XXXX.nii.gz, nnU-Net's raw naming)")
    s.add_argument("-o", required=True, help="output folder")
    s.add_argument("-d", required=True, help="dataset name or id")
    s.add_argument("--coarse", required=True, metavar="TRAINER:CONFIG[:PLANS]", help="the coarse model")
    s.add_argument("--fine", required=True, metavar="TRAINER:CONFIG[:PLANS]", help="the fine model")
    s.add_argument("-f", nargs="+", default=None, metavar="FOLD",
                   help="folds of both models (default: every fold with a checkpoint)")
    s.add_argument("--margin-mm", type=float, default=DEFAULT_FINE_MARGIN_MM,
                   help=f"margin around the coarse box in mm (c2f mode). Default {DEFAULT_FINE_MARGIN_MM:g}")
    s.add_argument("--coarse-step", type=float, default=0.9,
                   help="tile step of the coarse model, fraction of the patch (little overlap). Default 0.9")
    s.add_argument("--fine-step", type=float, default=0.5,
                   help="tile step of the fine model (large overlap). Default 0.5")
    s.add_argument("--min-component-fraction", type=float, default=0.2,
                   help="remove components smaller than this fraction of the total foreground (0: keep all). "
                        "Default 0.2")
    s.add_argument("--mode", choices=("c2f", "two-stage"), default="c2f",
                   help="c2f: ResDSN C2F (one box + margin-mm); two-stage: two boxes + majority vote with the "
                        "upsampled coarse mask (coarse model on a make-coarse-config configuration)")
    s.add_argument("--two-stage-margins", type=int, nargs=2, default=[TWO_STAGE_COARSE_MARGIN_VOX,
                                                                      TWO_STAGE_FINE_MARGIN_VOX],
                   metavar=("COARSE_VOX", "FINE_VOX"), help="two-stage box margins. Default 2 10")
    s.add_argument("--coarse-dataset", default=None,
                   help="look the coarse model up in this dataset's results instead of -d's (e.g. a copy of the "
                        "dataset under another id); its plans must name the same dataset, labels and channels as "
                        "the fine model's, or predict-c2f refuses")
    s.add_argument("--chk", default="checkpoint_final.pth", help="checkpoint file name. Default checkpoint_final.pth")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="Default: cuda if available")
    s.add_argument("--disable-tta", action="store_true", help="no mirroring test-time augmentation")
    s.set_defaults(func=cmd_predict_c2f)

    s = subparsers.add_parser(
        "make-coarse-config", help="add the R-times downsampled coarse configuration (two-stage U-Net) to the plans",
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
