"""The coarse-to-fine pipeline of ``nnunet-ext predict-c2f`` (resdsn_c2f Fig. 2, Eqs. 4-5; two_stage_unet Fig. 2):
one case (:func:`predict_case`), the cases of a folder (:func:`run_cases`) and the whole run (:func:`predict_c2f`).
The mode (:mod:`nnunet_ext.c2f.modes`) decides the boxes and how the fine masks are combined; the stages on nnU-Net's
predictor are in :mod:`nnunet_ext.c2f.stages`, the two models in :mod:`nnunet_ext.c2f.models`.

Per case: the coarse model over the whole volume (little overlap); the mode's boxes from its foreground (small
components removed first); the fine model over each box (large overlap) on the image preprocessed with the fine
model's plans over the WHOLE image (the coarse stage's preprocessed image when both models preprocess alike); the
fine masks pasted into full-size background volumes and combined by the mode; small components removed; written
with exactly the input's geometry. No coarse foreground: ``fallback="coarse"`` keeps the coarse result
(background), ``"fine"`` runs the fine model on the whole volume; a notice names the case.

Per-case times of both stages go to ``c2f_times.json`` beside the predictions. Bad input is found before anything
is written; each case is written to a hidden temporary file in the output folder and renamed when complete; a
failing case stops the run with one line naming it and the finished cases stay (``continue_prediction`` skips them
on the next run).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nnunet_ext.boxes import Box, box_size
from nnunet_ext.c2f.masks import majority_vote, paste, remove_small_components  # noqa: F401  (re-exported)
from nnunet_ext.c2f.models import check_compatible, load_predictor, resolve_model, torch_device
from nnunet_ext.c2f.modes import DEFAULT_FINE_MARGIN_MM, DEFAULT_MODE, TWO_STAGE_MARGINS_VOX, C2FMode, get_mode
from nnunet_ext.c2f.stages import (StageOutput, coarse_grid_factor, preprocess,  # noqa: F401  (re-exported)
                                   preprocessed_box_to_raw, raw_box_to_preprocessed, run_fine_in_box, run_stage,
                                   same_preprocessing)
from nnunet_ext.checks import check_c2f_arguments, check_prediction_inputs
from nnunet_ext.errors import UserError

TIMES_FILE = "c2f_times.json"
#: ``--fallback``: what happens when the coarse model finds no foreground
FALLBACKS = ("coarse", "fine")

_user_error = UserError  # one-line error, exit status 2 (nnunet_ext.errors)


def list_cases(folder: Path, file_ending: str, num_channels: int) -> Dict[str, List[str]]:
    """``{case: its channel files}`` of an input folder in nnU-Net's raw naming (``CASE_XXXX<file_ending>``);
    UserError for a missing folder, a misnamed file, no image or a missing channel."""
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


@dataclass
class CoarseResult:
    """The coarse stage of one case as a mode's box rule reads it (:mod:`nnunet_ext.c2f.modes`)."""
    seg: np.ndarray  # small components removed, in the input's geometry
    seg_preprocessed: Optional[np.ndarray]  # argmax on the coarse model's grid (modes that need it), not cleaned
    spacing: List[float]
    shape: Tuple[int, ...]
    properties: dict  # nnU-Net's properties of the coarse stage's preprocessing
    predictor: object  # the coarse model's predictor (its plans' axis order)

    def grid_factor(self, pre_shape: Sequence[int]) -> Tuple[float, ...]:
        """Input voxels per coarse-grid voxel on every input axis (:func:`coarse_grid_factor`)."""
        return coarse_grid_factor(pre_shape, self.properties, self.predictor.plans_manager.transpose_backward)

    def to_raw(self, box: Box, pre_shape: Sequence[int]) -> Box:
        """A box on the coarse grid of ``pre_shape`` -> the input's axes (:func:`preprocessed_box_to_raw`)."""
        return preprocessed_box_to_raw(box, pre_shape, self.properties, self.predictor.plans_manager.transpose_backward)


def predict_case(case: str, files: List[str], coarse_p, fine_p, reader, mode: Union[str, C2FMode], margin_mm: float,
                 min_component_fraction: float, ts_margins: Tuple[int, int] = TWO_STAGE_MARGINS_VOX,
                 fallback: str = "coarse"):
    """One case; returns (segmentation in the input's array geometry, image properties, record for the JSON)."""
    mode = get_mode(mode)
    try:
        image, props = reader.read_images(files)
    except Exception as e:  # noqa: BLE001 - any reader failure is the user's file
        raise _user_error(f"cannot read {files[0]}: {type(e).__name__}: {e}") from None
    spacing = [float(s) for s in props["spacing"]]
    shape = image.shape[1:]
    rec = {"mode": mode.name, "shape": list(shape), "spacing": spacing}

    coarse = run_stage(coarse_p, image, spacing, want_preprocessed_seg=mode.needs_preprocessed_seg)
    coarse_seg = remove_small_components(coarse.seg, min_component_fraction)
    rec["coarse_s"] = coarse.seconds

    t0 = time.perf_counter()
    boxes, box_record = mode.boxes(CoarseResult(coarse_seg, coarse.seg_preprocessed, spacing, tuple(shape),
                                                coarse.properties, coarse_p),
                                   margin_mm, ts_margins, min_component_fraction)
    rec.update(box_record)
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
        seg = mode.combine(pasted, coarse_seg)
        rec["fine_voxels_fraction"] = float(max(np.prod(box_size(b)) for b in boxes) / np.prod(shape))
    seg = remove_small_components(seg, min_component_fraction)
    rec["fine_s"] = time.perf_counter() - t0
    rec["total_s"] = rec["coarse_s"] + rec["fine_s"]
    return seg, props, rec


def check_options(coarse_step: float, fine_step: float, margin_mm: float, min_component_fraction: float,
                  mode: Union[str, C2FMode], fallback: str) -> None:
    """UserError for an option out of range, an unknown mode or fallback."""
    for name, v in (("--coarse-step", coarse_step), ("-step_size", fine_step)):
        if not (0 < v <= 1):
            raise _user_error(f"{name} must be in (0, 1], got {v}")
    if not (margin_mm >= 0 and math.isfinite(margin_mm)):
        raise _user_error(f"--margin-mm must be >= 0, got {margin_mm}")
    if not (0 <= min_component_fraction < 1):
        raise _user_error(f"--min-component-fraction must be in [0, 1), got {min_component_fraction}")
    get_mode(mode)
    if fallback not in FALLBACKS:
        raise _user_error(f"--fallback must be coarse or fine, got {fallback!r}")


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def run_cases(cases: Dict[str, List[str]], output_folder: Path, coarse_p, fine_p, reader, file_ending: str,
              record: dict, mode: Union[str, C2FMode], margin_mm: float, min_component_fraction: float, ts_margins,
              fallback: str, continue_prediction: bool = False) -> dict:
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


def pair_record(coarse, fine, dev, mode: Union[str, C2FMode], coarse_step: float, fine_step: float,
                margin_mm: float, ts_margins, min_component_fraction: float, fallback: str) -> dict:
    """The run's settings, with which ``c2f_times.json`` starts (``coarse``, ``fine``: the models'
    :class:`~nnunet_ext.c2f.models.ModelRef`); :func:`run_cases` fills ``cases``."""
    mode = get_mode(mode)
    return {"mode": mode.name, "coarse": f"{coarse.trainer}:{coarse.configuration}:{coarse.plans_name}",
            "fine": f"{fine.trainer}:{fine.configuration}:{fine.plans_name}",
            "coarse_folds": coarse.folds, "fine_folds": fine.folds, "device": str(dev),
            "coarse_step": coarse_step, "fine_step": fine_step, **mode.margins_record(margin_mm, ts_margins),
            "min_component_fraction": min_component_fraction, "fallback": fallback, "cases": {}}


def predict_c2f(input_folder, output_folder, dataset, coarse_spec: str, fine_spec: str, folds=None,
                margin_mm: float = DEFAULT_FINE_MARGIN_MM, coarse_step: float = 0.9, fine_step: float = 0.5,
                min_component_fraction: float = 0.2, mode: Union[str, C2FMode] = DEFAULT_MODE, device: str = "auto",
                checkpoint: str = "checkpoint_final.pth", coarse_dataset=None, disable_mirroring: bool = False,
                ts_margins: Tuple[int, int] = TWO_STAGE_MARGINS_VOX,
                fallback: str = "coarse", continue_prediction: bool = False) -> dict:
    """The whole pipeline; returns the content of the times JSON. Raises ``UserError`` for bad input (found before
    anything is written) and for a failing case (the cases finished before it are kept)."""
    from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name

    input_folder, output_folder = Path(input_folder), Path(output_folder)
    folds = check_c2f_arguments(folds, output_folder)  # nnunet_ext.checks: folds, output path
    check_options(coarse_step, fine_step, margin_mm, min_component_fraction, mode, fallback)
    mode = get_mode(mode)
    coarse = resolve_model("coarse", coarse_dataset if coarse_dataset is not None else dataset, coarse_spec, folds,
                           checkpoint)
    fine = resolve_model("fine", dataset, fine_spec, folds, checkpoint)
    check_compatible(coarse, fine)
    check_prediction_inputs(input_folder, coarse, fine)  # every file read completely, finite, ...
    dj = fine.dataset_json
    cases = list_cases(input_folder, dj["file_ending"], len(dj.get("channel_names", dj.get("modality", {}))))
    if output_folder.exists() and not output_folder.is_dir():
        raise _user_error(f"output {output_folder} exists and is not a folder")
    dev = torch_device(device)

    coarse_p = load_predictor(coarse, coarse_step, dev, not disable_mirroring)
    fine_p = load_predictor(fine, fine_step, dev, not disable_mirroring)
    reader = recursive_find_reader_writer_by_name(coarse.plans["image_reader_writer"])()
    record = pair_record(coarse, fine, dev, mode, coarse_step, fine_step, margin_mm, ts_margins,
                         min_component_fraction, fallback)
    run_cases(cases, output_folder, coarse_p, fine_p, reader, dj["file_ending"], record, mode, margin_mm,
              min_component_fraction, ts_margins, fallback, continue_prediction)
    print(f"wrote {len(cases)} predictions and {TIMES_FILE} to {output_folder}")
    return record
