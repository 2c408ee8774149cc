"""The coarse-to-fine pipeline of ``nnunet-ext predict-c2f`` (resdsn_c2f Fig. 2, Eqs. 4-5; two_stage_unet Fig. 2):
one case (:func:`predict_case`), the cases of a folder (:func:`run_cases`) and the whole run (:func:`predict_c2f`).
The mode (:mod:`nnunet_ext.c2f.modes`) decides the boxes and how the fine masks are combined; the stages on nnU-Net's
predictor are in :mod:`nnunet_ext.c2f.stages`, the two models in :mod:`nnunet_ext.c2f.models`.

Per case: the coarse model over the whole volume (little overlap) and its argmax on its own grid; the mode's boxes
from that mask (the largest component plus those >= ``min_component_fraction`` of it: the filter only chooses the
box) on the fine model's grid, grown by the fine margin there (:func:`resolve_margin`: by default the fine
trainer's own); the fine model over each box (large overlap) of the image preprocessed with the fine model's plans
over the WHOLE image (the coarse stage's preprocessed image when both models preprocess alike); each box's logits
pasted into a whole-grid background tensor and exported with nnU-Net's own function (exactly where a whole-volume
prediction lands), combined by the mode and written unfiltered with exactly the input's geometry (post-processing
belongs to the scoring). No coarse box: ``fallback="coarse"`` exports the coarse result (background),
``"fine"`` runs the fine model on the whole volume; a notice names the case and says whether the coarse model found
no foreground at all.

Per-case times of every stage (preprocess, coarse, box, fine, export) go to ``c2f_times.json`` beside the
predictions. Bad input is found before anything is written; each case is written to a hidden temporary file in the
output folder and renamed when complete; a failing case stops the run with one line naming it and the finished
cases stay (``continue_prediction`` skips them on the next run).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nnunet_ext.boxes import Box, box_size, fine_margin_voxels
from nnunet_ext.c2f.masks import majority_vote, paste, remove_small_components  # noqa: F401  (re-exported)
from nnunet_ext.c2f.models import check_compatible, load_predictor, resolve_model, torch_device
from nnunet_ext.c2f.modes import DEFAULT_FINE_MARGIN_MM, DEFAULT_MODE, TWO_STAGE_MARGINS_VOX, C2FMode, get_mode
from nnunet_ext.c2f.stages import (Preprocessed, StageOutput, box_logits_on_grid,  # noqa: F401  (re-exported)
                                   coarse_grid_factor, export, grid_box_to_grid, grid_foreground, grid_segmentation,
                                   grid_spacing_of,
                                   predict_logits, preprocess, preprocessed_box_to_raw, raw_box_to_preprocessed,
                                   run_fine_in_box, run_stage, same_preprocessing)
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
    grid: np.ndarray  # coarse foreground on the coarse model's grid, its components chosen (remove_small_components)
    to_fine: Callable[[Box], Optional[Box]]  # a coarse-grid box -> the fine grid's box covering it
    fine_shape: Tuple[int, ...]  # the fine model's preprocessed grid
    fine_margin_vox: Tuple[int, ...]  # the fine margin in voxels of that grid (boxes.fine_margin_voxels)
    factor: Tuple[float, ...]  # input voxels per coarse-grid voxel on every input axis


@dataclass
class CaseInput:
    """One case read and preprocessed (by the worker that runs ahead of the networks)."""
    props: dict  # the reader's properties (written back with the segmentation)
    shape: Tuple[int, ...]
    spacing: List[float]
    coarse: Preprocessed
    fine: Optional[Preprocessed]  # None: the fine model reuses the coarse stage's preprocessing
    seconds: float


def resolve_margin(margin_mm: Optional[float], fine_trainer: Optional[str]) -> Tuple[Optional[float], Optional[int]]:
    """(mm, voxels) of the fine boxes' margin: ``margin_mm`` when given; else the fine trainer's own training margin
    (trainers/c2f.py ``training_margin``); else :data:`DEFAULT_FINE_MARGIN_MM`."""
    if margin_mm is not None:
        return float(margin_mm), None
    if isinstance(fine_trainer, str):
        from nnunet_ext.lookup import find_trainer_class
        from nnunet_ext.trainers.c2f import training_margin

        try:
            mm, vox = training_margin(find_trainer_class(fine_trainer))
        except UserError:
            mm, vox = None, None
        if mm is not None or vox is not None:
            return mm, vox
    return DEFAULT_FINE_MARGIN_MM, None


def load_case(files: List[str], coarse_p, fine_p, reader) -> CaseInput:
    """Read a case and preprocess it with the coarse model's plans (and the fine model's, when they differ)."""
    t0 = time.perf_counter()
    try:
        image, props = reader.read_images(files)
    except Exception as e:  # noqa: BLE001 - any reader failure is the user's file
        raise _user_error(f"cannot read {files[0]}: {type(e).__name__}: {e}") from None
    spacing = [float(s) for s in props["spacing"]]
    pre_c = preprocess(coarse_p, image, spacing)
    pre_f = None if same_preprocessing(coarse_p, fine_p) else preprocess(fine_p, image, spacing)
    return CaseInput(props, tuple(image.shape[1:]), spacing, pre_c, pre_f, time.perf_counter() - t0)


def network_part(case: str, inp: CaseInput, coarse_p, fine_p, mode: Union[str, C2FMode],
                 margin: Tuple[Optional[float], Optional[int]], min_component_fraction: float,
                 coarse_margins: Sequence[int] = TWO_STAGE_MARGINS_VOX, fallback: str = "coarse"):
    """The networks of one case: the coarse model over the whole image, the box from its argmax on its own grid,
    the fine model on the box. Returns (``finish``: a function that exports to the input's geometry and combines,
    run by the writer; the case's record)."""
    mode = get_mode(mode)
    rec = {"mode": mode.name, "shape": list(inp.shape), "spacing": inp.spacing, "preprocess_s": inp.seconds}
    t0 = time.perf_counter()
    pre_c = inp.coarse
    logits_c = predict_logits(coarse_p, pre_c.data)
    t1 = time.perf_counter()
    grid = grid_foreground(coarse_p, logits_c)
    chosen = remove_small_components(grid, min_component_fraction)
    pre_f = inp.fine if inp.fine is not None else pre_c
    rec["fine_preprocessing"] = "reused the coarse stage's" if inp.fine is None else "whole image, fine plans"
    fine_shape = tuple(pre_f.data.shape[1:])
    tb_c, tf_f = coarse_p.plans_manager.transpose_backward, fine_p.plans_manager.transpose_forward
    coarse_res = CoarseResult(
        chosen, lambda b: grid_box_to_grid(b, grid.shape, pre_c.props, tb_c, fine_shape, pre_f.props, tf_f),
        fine_shape, fine_margin_voxels(*margin, grid_spacing_of(fine_p, pre_f.props)),
        coarse_grid_factor(grid.shape, pre_c.props, tb_c))
    boxes, box_record = mode.boxes(coarse_res, coarse_margins)
    rec.update(box_record)
    rec["coarse_s"], rec["box_s"] = t1 - t0, time.perf_counter() - t1
    tb_f = fine_p.plans_manager.transpose_backward
    rec["boxes"] = [[list(r) for r in preprocessed_box_to_raw(b, fine_shape, pre_f.props, tb_f)]
                    for b in boxes] or None
    t2 = time.perf_counter()
    if not boxes:
        rec["fallback"] = fallback
        why = ("the coarse model found no foreground" if not grid.any() else
               f"the coarse foreground ({int((grid > 0).sum())} voxels) gave no box inside the fine model's crop")
        if fallback == "coarse":
            print(f"{case}: {why}: the output is the coarse result; --fallback fine would run the fine model on the "
                  f"whole volume")
            rec["fine_voxels_fraction"], outs = 0.0, [(coarse_p, logits_c, pre_c.props)]
        else:
            print(f"{case}: {why}: running the fine model on the whole volume (--fallback fine)")
            outs = [(fine_p, predict_logits(fine_p, pre_f.data), pre_f.props)]
            rec["fine_voxels_fraction"] = 1.0
        combine = lambda segs: segs[0]  # noqa: E731
    else:
        rec["fallback"] = None
        outs = [(fine_p, box_logits_on_grid(fine_p, pre_f, b), pre_f.props) for b in boxes]
        if mode.needs_raw_coarse:
            outs.append((coarse_p, logits_c, pre_c.props))
        combine = (lambda segs: mode.combine(segs[:-1], segs[-1])) if mode.needs_raw_coarse else \
            (lambda segs: mode.combine(segs, None))
        rec["fine_voxels_fraction"] = float(max(np.prod(box_size(b)) for b in boxes) / np.prod(fine_shape))
    rec["fine_s"] = time.perf_counter() - t2
    del logits_c

    def finish() -> np.ndarray:
        t = time.perf_counter()
        seg = combine([export(p, lg, pr) for p, lg, pr in outs])
        outs.clear()
        rec["export_s"] = time.perf_counter() - t
        rec["total_s"] = sum(rec[k] for k in ("preprocess_s", "coarse_s", "box_s", "fine_s", "export_s"))
        return seg

    return finish, rec


def predict_case(case: str, files: List[str], coarse_p, fine_p, reader, mode: Union[str, C2FMode],
                 margin_mm: Optional[float], min_component_fraction: float,
                 ts_margins: Sequence[int] = TWO_STAGE_MARGINS_VOX, fallback: str = "coarse"):
    """One case, in one thread; returns (segmentation in the input's array geometry, image properties, record)."""
    margin = resolve_margin(margin_mm, getattr(fine_p, "trainer_name", None))
    inp = load_case(files, coarse_p, fine_p, reader)
    finish, rec = network_part(case, inp, coarse_p, fine_p, mode, margin, min_component_fraction, ts_margins,
                               fallback)
    return finish(), inp.props, rec


def check_options(coarse_step: float, fine_step: float, margin_mm: Optional[float], min_component_fraction: float,
                  mode: Union[str, C2FMode], fallback: str, ts_margins: Optional[Sequence[int]] = None) -> None:
    """UserError for an option out of range, an unknown mode or fallback."""
    for name, v in (("--coarse-step", coarse_step), ("-step_size", fine_step)):
        if not (0 < v <= 1):
            raise _user_error(f"{name} must be in (0, 1], got {v}")
    if margin_mm is not None and not (margin_mm >= 0 and math.isfinite(margin_mm)):
        raise _user_error(f"--margin-mm must be >= 0, got {margin_mm}")
    if not (0 <= min_component_fraction < 1):
        raise _user_error(f"--min-component-fraction must be in [0, 1), got {min_component_fraction}")
    get_mode(mode)
    if fallback not in FALLBACKS:
        raise _user_error(f"--fallback must be coarse or fine, got {fallback!r}")
    if ts_margins is not None:
        check_coarse_margins(ts_margins)


def check_coarse_margins(ts_margins: Sequence[int]) -> None:
    """The two-stage coarse-grid margin: one whole number >= 0. Two values are the old ``--two-stage-margins
    COARSE_VOX FINE_VOX``, whose second (box 2, in voxels) is now the fine margin in mm."""
    if len(ts_margins) != 1:
        raise _user_error(f"--two-stage-margins {' '.join(map(str, ts_margins))}: box 2's margin is now the fine "
                          f"margin in mm (--margin-mm, default: the fine trainer's); give only the coarse one: "
                          f"--two-stage-coarse-margin {ts_margins[0]}")
    if int(ts_margins[0]) != ts_margins[0] or ts_margins[0] < 0:
        raise _user_error(f"--two-stage-coarse-margin must be a whole number >= 0, got {ts_margins[0]}")


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def _finish_and_write(finish, reader, props: dict, tmp: Path, target: Path) -> None:
    """Export, write to the hidden temporary file, rename into place (the writer thread)."""
    try:
        seg = finish()
        reader.write_seg(seg, str(tmp), props)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _case_failed(case: str, e: BaseException, done: int, output_folder: Path) -> UserError:
    msg = str(e).strip().splitlines()
    what = msg[-1] if isinstance(e, UserError) and msg else f"{type(e).__name__}: {msg[0] if msg else ''}"
    return _user_error(f"case {case} failed ({what}); {done} case(s) finished in this run are kept in "
                       f"{output_folder} (rerun with --continue_prediction to skip them)")


def run_cases(cases: Dict[str, List[str]], output_folder: Path, coarse_p, fine_p, reader, file_ending: str,
              record: dict, mode: Union[str, C2FMode], margin: Tuple[Optional[float], Optional[int]],
              min_component_fraction: float, ts_margins, fallback: str, continue_prediction: bool = False) -> dict:
    """Predict ``cases`` into ``output_folder``; ``margin``: the fine margin (mm, voxels) of :func:`resolve_margin`,
    the one :func:`pair_record` records. As ``nnUNetv2_predict`` does, the input/output work overlaps the networks:
    while they run on case i, one worker thread first exports and writes case i-1, then reads and preprocesses case
    i+1, one after the other, so at most one case is in flight beside the current one (peak memory: docs/c2f.md).
    Each segmentation is written to a hidden temporary file in the output folder and
    renamed when complete (a killed run leaves no partial prediction); ``c2f_times.json`` is rewritten after every
    case. A failing case stops the run with one line naming it; the finished cases stay. ``continue_prediction``:
    cases whose prediction exists already are skipped (as ``nnUNetv2_predict --continue_prediction``)."""
    from concurrent.futures import ThreadPoolExecutor

    check_coarse_margins(ts_margins)
    output_folder.mkdir(parents=True, exist_ok=True)
    for stale in output_folder.glob(f".*.c2f-partial{file_ending}"):
        stale.unlink()  # left by a killed run
    times_file = output_folder / TIMES_FILE
    if continue_prediction and times_file.is_file():
        try:
            record["cases"].update(json.loads(times_file.read_text()).get("cases", {}))
        except (OSError, json.JSONDecodeError):
            pass
    todo = []
    for case, files in cases.items():
        if continue_prediction and (output_folder / f"{case}{file_ending}").is_file():
            print(f"{case}: prediction exists, skipped (--continue_prediction)")
        else:
            todo.append((case, files))
    done = 0

    def collect(pending) -> None:
        """Wait for the writer's case; record it (the run's one line if it failed)."""
        nonlocal done
        case, future, rec = pending
        try:
            future.result()
        except Exception as e:  # noqa: BLE001 - one line naming the case; the finished cases are kept
            raise _case_failed(case, e, done, output_folder) from None
        done += 1
        record["cases"][case] = rec
        record["mean_total_s"] = float(np.mean([r["total_s"] for r in record["cases"].values()]))
        _write_json_atomic(times_file, record)
        if rec["fallback"] == "coarse":
            how = "not run (no coarse box: coarse result kept)"
        elif rec["fallback"] == "fine":
            how = "on the whole volume (no coarse box)"
        else:
            how = f"on {len(rec['boxes'])} box(es), {100 * rec['fine_voxels_fraction']:.1f}% of the volume"
        print(f"{case}: " + ", ".join(f"{k[:-2]} {rec[k]:.2f} s" for k in
                                      ("preprocess_s", "coarse_s", "box_s", "fine_s", "export_s", "total_s"))
              + f"; fine stage {how}", flush=True)

    with ThreadPoolExecutor(1, thread_name_prefix="c2f-io") as io:  # one worker: export i-1, then read i+1
        ahead = io.submit(load_case, todo[0][1], coarse_p, fine_p, reader) if todo else None
        pending = None
        try:
            for i, (case, files) in enumerate(todo):
                record["cases"].pop(case, None)
                try:
                    inp = ahead.result()
                    # queued behind the pending export: the next case is read only once the last one is written
                    ahead = (io.submit(load_case, todo[i + 1][1], coarse_p, fine_p, reader)
                             if i + 1 < len(todo) else None)
                    finish, rec = network_part(case, inp, coarse_p, fine_p, mode, margin, min_component_fraction,
                                               ts_margins, fallback)
                    props = inp.props
                    del inp
                except Exception as e:  # noqa: BLE001
                    if pending is not None:
                        collect(pending)
                        pending = None
                    raise _case_failed(case, e, done, output_folder) from None
                if pending is not None:
                    collect(pending)  # one export in flight at a time
                target = output_folder / f"{case}{file_ending}"
                tmp = output_folder / f".{case}.c2f-partial{file_ending}"
                pending = (case, io.submit(_finish_and_write, finish, reader, props, tmp, target), rec)
                del finish
            if pending is not None:
                collect(pending)
                pending = None
        finally:
            if ahead is not None:
                ahead.cancel()
    if not times_file.is_file():
        _write_json_atomic(times_file, record)
    return record


def pair_record(coarse, fine, dev, mode: Union[str, C2FMode], coarse_step: float, fine_step: float,
                margin: Tuple[Optional[float], Optional[int]], ts_margins, min_component_fraction: float,
                fallback: str) -> dict:
    """The run's settings, with which ``c2f_times.json`` starts (``coarse``, ``fine``: the models'
    :class:`~nnunet_ext.c2f.models.ModelRef`); :func:`run_cases` fills ``cases``. ``margin``: the fine margin
    (mm, voxels) of :func:`resolve_margin`, the one given to :func:`run_cases`."""
    mode = get_mode(mode)
    check_coarse_margins(ts_margins)
    return {"mode": mode.name, "coarse": f"{coarse.trainer}:{coarse.configuration}:{coarse.plans_name}",
            "fine": f"{fine.trainer}:{fine.configuration}:{fine.plans_name}",
            "coarse_folds": coarse.folds, "fine_folds": fine.folds, "device": str(dev),
            "coarse_step": coarse_step, "fine_step": fine_step, **mode.margins_record(*margin, ts_margins),
            "min_component_fraction": min_component_fraction, "fallback": fallback, "cases": {}}


def check_pair(output_folder, dataset, coarse_spec: str, fine_spec: str, folds, margin_mm: Optional[float],
               coarse_step: float, fine_step: float, min_component_fraction: float, mode, fallback: str,
               ts_margins: Sequence[int], checkpoint: str, coarse_dataset=None):
    """Everything of a predict-c2f run but its input folder, checked before anything is read or written: the output
    path, the folds, the options, both models (checkpoints read whole, no cascade configuration) and that they fit
    together. Returns the (coarse, fine) :class:`~nnunet_ext.c2f.models.ModelRef` pair; UserError otherwise."""
    folds = check_c2f_arguments(folds, Path(output_folder))  # nnunet_ext.checks: folds, output path
    check_options(coarse_step, fine_step, margin_mm, min_component_fraction, mode, fallback, ts_margins)
    coarse = resolve_model("coarse", coarse_dataset if coarse_dataset is not None else dataset, coarse_spec, folds,
                           checkpoint)
    fine = resolve_model("fine", dataset, fine_spec, folds, checkpoint)
    check_compatible(coarse, fine)
    return coarse, fine


def predict_c2f(input_folder, output_folder, dataset, coarse_spec: str, fine_spec: str, folds=None,
                margin_mm: Optional[float] = None, coarse_step: float = 0.9, fine_step: float = 0.5,
                min_component_fraction: float = 0.2, mode: Union[str, C2FMode] = DEFAULT_MODE, device: str = "auto",
                checkpoint: str = "checkpoint_final.pth", coarse_dataset=None, disable_mirroring: bool = False,
                ts_margins: Sequence[int] = TWO_STAGE_MARGINS_VOX,
                fallback: str = "coarse", continue_prediction: bool = False, models=None) -> dict:
    """The whole pipeline; returns the content of the times JSON. ``margin_mm`` None: the fine trainer's own training
    margin (:func:`resolve_margin`). ``models``: the (coarse, fine) pair :func:`check_pair` returned for these
    arguments (checked already; otherwise it is called here). Raises ``UserError`` for bad input (found before
    anything is written) and for a failing case (the cases finished before it are kept)."""
    from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name

    input_folder, output_folder = Path(input_folder), Path(output_folder)
    mode = get_mode(mode) if models is not None else mode
    coarse, fine = models if models is not None else check_pair(
        output_folder, dataset, coarse_spec, fine_spec, folds, margin_mm, coarse_step, fine_step,
        min_component_fraction, mode, fallback, ts_margins, checkpoint, coarse_dataset)
    mode = get_mode(mode)
    check_prediction_inputs(input_folder, coarse, fine)  # every file read completely, finite, ...
    dj = fine.dataset_json
    cases = list_cases(input_folder, dj["file_ending"], len(dj.get("channel_names", dj.get("modality", {}))))
    if output_folder.exists() and not output_folder.is_dir():
        raise _user_error(f"output {output_folder} exists and is not a folder")
    dev = torch_device(device)

    coarse_p = load_predictor(coarse, coarse_step, dev, not disable_mirroring)
    fine_p = load_predictor(fine, fine_step, dev, not disable_mirroring)
    reader = recursive_find_reader_writer_by_name(coarse.plans["image_reader_writer"])()
    margin = resolve_margin(margin_mm, fine.trainer)  # once: the boxes' margin is the recorded one
    record = pair_record(coarse, fine, dev, mode, coarse_step, fine_step, margin, ts_margins,
                         min_component_fraction, fallback)
    run_cases(cases, output_folder, coarse_p, fine_p, reader, dj["file_ending"], record, mode, margin,
              min_component_fraction, ts_margins, fallback, continue_prediction)
    print(f"wrote {len(cases)} predictions and {TIMES_FILE} to {output_folder}")
    return record
