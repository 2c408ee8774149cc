"""A tiny fake nnU-Net world for bad-input checks (a fake 1-channel trained-model folder: every check happens before
a network is loaded), tiny NIfTI writers, and the bad arguments of every command with the text their one-line error
must contain: shared by tests/unit/test_inputs.py and the bad-input survey ``benchmarks/bad_inputs.py``
(docs/bad_inputs.md)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np

import nnunet_ext

DS = "Dataset999_Tiny"
SPACING = (0.8, 0.9, 2.5)
ORIGIN = (-123.456, 78.9, 300.1)


def write_image(path, arr, spacing=SPACING, origin=ORIGIN, is_vector=False):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr, isVector=is_vector)
    img.SetSpacing(spacing[: img.GetDimension()] if img.GetDimension() <= 3 else (*spacing, 1.0))
    img.SetOrigin(origin[: img.GetDimension()] if img.GetDimension() <= 3 else (*origin, 0.0))
    sitk.WriteImage(img, str(path))
    return Path(path)


def image(seed=0, shape=(6, 10, 12)):
    return np.random.default_rng(seed).normal(0, 100, shape).astype(np.float32)


def label(shape=(6, 10, 12)):
    seg = np.zeros(shape, np.uint8)
    seg[1:5, 2:8, 3:9] = 1
    return seg


def write_checkpoint(path):
    """A small but complete checkpoint in torch.save's (zip) format, as the input checks read it."""
    import torch

    torch.save({"network_weights": {"w": torch.zeros(64)}, "trainer_name": "nnUNetTrainer"}, str(path))
    return Path(path)


def truncate(path, keep=0.6):
    b = Path(path).read_bytes()
    Path(path).write_bytes(b[: int(len(b) * keep)])
    return Path(path)


def make_world(tmp_path: Path, setenv: Callable[[str, str], None]) -> SimpleNamespace:
    """In ``tmp_path``: nnUNet_raw/preprocessed/results (set with ``setenv``) with a fake 1-channel model (3d_fullres and 2d configurations; fold_0 has a
    checkpoint file), a good input folder, and gt/pred label folders for evaluate."""
    raw, pre, res = (tmp_path / n for n in ("raw", "pre", "res"))
    dj = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1}, "numTraining": 1,
          "file_ending": ".nii.gz"}
    plans = {"dataset_name": DS, "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
             "configurations": {"3d_fullres": {"patch_size": [8, 8, 8]}, "2d": {"patch_size": [8, 8]},
                                "3d_child": {"inherits_from": "3d_fullres"},
                                "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}}}
    for conf in ("3d_fullres", "2d", "3d_cascade_fullres"):
        model = res / DS / f"nnUNetTrainer__nnUNetPlans__{conf}"
        (model / "fold_0").mkdir(parents=True)
        write_checkpoint(model / "fold_0" / "checkpoint_final.pth")
        (model / "plans.json").write_text(json.dumps(plans))
        (model / "dataset.json").write_text(json.dumps(dj))
    (pre / DS).mkdir(parents=True)
    (pre / DS / "nnUNetPlans.json").write_text(json.dumps(plans))
    (pre / DS / "dataset.json").write_text(json.dumps(dj))
    (pre / DS / "splits_final.json").write_text(json.dumps([{"train": ["case1"], "val": ["case0"]}]))
    (raw / DS).mkdir(parents=True)
    for k, v in (("nnUNet_raw", raw), ("nnUNet_preprocessed", pre), ("nnUNet_results", res)):
        setenv(k, str(v))
    setenv("nnUNet_extTrainer", nnunet_ext.EXT_TRAINER_DIR)
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(2):
        write_image(inp / f"case{i}_0000.nii.gz", image(i))
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    for i in range(2):
        write_image(gt / f"case{i}.nii.gz", label())
        write_image(pred / f"case{i}.nii.gz", label())
    (tmp_path / "afile").write_text("a regular file")
    return SimpleNamespace(tmp=tmp_path, inp=inp, gt=gt, pred=pred, dj=pre / DS / "dataset.json",
                           pj=pre / DS / "nnUNetPlans.json", afile=tmp_path / "afile", plans=plans, dataset_json=dj)


def tree(root: Path):
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


def bad_cases(w):
    """(argv, text the one line must contain) for every command; ``{afile}`` is a regular file."""
    below = w.afile / "sub"
    c2f = ["predict-c2f", "-i", w.inp, "-o", w.tmp / "c2f_out", "-d", DS, "--coarse", "nnUNetTrainer:3d_fullres",
           "--fine", "nnUNetTrainer:3d_fullres", "--device", "cpu"]
    ev = ["evaluate", w.gt, w.pred, "-djfile", w.dj, "-pfile", w.pj]
    pr = ["predict", "-i", w.inp, "-o", w.tmp / "pred_out", "-d", DS, "-c", "3d_fullres", "-f", "0",
          "-device", "cpu"]
    cv = ["crossval-c2f", "-o", w.tmp / "cv_out", "-d", DS, "--coarse", "nnUNetTrainer:3d_fullres", "--fine",
          "nnUNetTrainer:3d_fullres", "-f", "0", "--device", "cpu"]
    bm = ["benchmark", "--skip-models", "--pred", f"nnUNetTrainer={w.pred}", "--labels", w.gt, "-djfile", w.dj,
          "-pfile", w.pj, "--reference", "nnUNetTrainer", "--out", w.tmp / "bm_out"]
    return [
        (c2f + ["-f", "x"], "-f 'x'"),
        (c2f + ["-f", "-1"], "-f"),
        ([*c2f[:4], below, *c2f[5:]], "afile is a file"),
        ([*c2f[:4], w.afile, *c2f[5:]], "exists and is not a folder"),
        (c2f + ["--coarse-step", "2"], "--coarse-step must be in (0, 1]"),
        (c2f + ["--margin-mm", "x"], "--margin-mm: invalid float value"),
        (c2f + ["--margin-mm", "nan"], "--margin-mm must be >= 0"),
        (c2f + ["--min-component-fraction", "1.5"], "--min-component-fraction"),
        (c2f + ["--two-stage-margins", "2"], "--two-stage-margins"),
        (c2f + ["-f", "3"], "fold 3"),
        (c2f + ["--mode", "x"], "--mode: invalid choice"),
        ([*c2f[:2], w.tmp / "nope", *c2f[3:]], "nope"),
        ([*c2f[:6], "Dataset998_Nope", *c2f[7:]], "Dataset998_Nope"),
        ([*c2f[:8], "nnUNetTrainer", *c2f[9:]], "TRAINER:CONFIGURATION"),
        (ev + ["-o", below / "s.json"], "afile is a file"),
        (ev + ["-o", w.tmp / "s.txt"], "must end with .json"),
        (ev + ["-np", "0"], "-np must be >= 1"),
        (ev + ["-np", "x"], "-np: invalid int value"),
        (ev + ["--nsd-tolerance-mm", "-1"], "--nsd-tolerance-mm must be >= 0"),
        (["evaluate", w.tmp / "nogt", w.pred, "-djfile", w.dj, "-pfile", w.pj], "nogt"),
        (["evaluate", w.gt, w.pred, "-djfile", w.tmp / "no.json", "-pfile", w.pj], "no.json"),
        (["evaluate", w.gt, w.pred, "-djfile", w.afile, "-pfile", w.pj], "afile"),
        (bm + ["--repeats", "x"], "--repeats: invalid int value"),
        ([*bm[:3], f"nnUNetTrainer={w.tmp / 'missing'}", *bm[4:]], "missing prediction folder"),
        ([*bm[:3], "nnUNetTrainer", *bm[4:]], "expected NAME=FOLDER"),
        (bm + ["--reference", "Other"], "--reference 'Other'"),
        (["benchmark", "--skip-models", "--out", w.tmp / "bm_out"], "nothing to do"),
        (["plan", "-d", DS, "--arch", "nope"], "nope"),
        (["plan", "-d", DS, "--arch", "plain_unet", "--gpu-memory-target", "x"], "--gpu-memory-target: invalid"),
        (["plan", "-d", "Dataset998_Nope", "--arch", "plain_unet"], "Dataset998_Nope"),
        (["make-dataset", "-o", below], "afile"),
        (["make-dataset", "-o", w.tmp / "mk", "--cases", "x"], "--cases: invalid int value"),
        (["make-dataset", "-o", w.tmp / "mk", "--cases", "0"], "cases"),
        (["make-dataset", "-o", w.tmp / "mk", "--spacing", "1", "1", "-1"], "spacing"),
        (["check-inputs", "-i", w.tmp / "nope", "--channels", "1"], "nope does not exist"),
        (["check-inputs", "-i", w.inp, "--channels", "0"], "--channels N (>= 1)"),
        (["check-inputs", "-i", w.inp, "--channels", "1", "--dim", "4"], "--dim: invalid choice"),
        (["check-inputs", "-i", w.inp, "-d", DS, "-c", "3d_lowres"], "'3d_lowres' does not exist"),
        (["check-inputs", "-i", w.inp, "-d", DS], "-d needs -c"),
        (["train", DS, "3d_fullres", "x", "-device", "cpu"], "FOLD 'x'"),
        (["train", DS, "3d_fullres", "0", "-tr", "nnUNetTrainerMoNet_0epochs"], "'nnUNetTrainerMoNet_0epochs' not found"),
        (["train", DS, "3d_fullres", "0", "-tr", "nnUNetTrainerNope"], "'nnUNetTrainerNope' not found"),
        (["train", DS, "3d_fullres", "0", "-num_gpus", "0"], "-num_gpus '0'"),
        (["train", DS, "3d_fullres", "0", "-device", "tpu"], "-device 'tpu'"),
        (["train", DS, "3d_lowres", "0", "-device", "cpu"], "'3d_lowres' does not exist"),
        (["train", "Dataset998_Nope", "3d_fullres", "0"], "Dataset998_Nope"),
        (["train", DS, "3d_fullres", "0", "-p", "NoPlans"], "NoPlans.json do not exist"),
        (pr[:-4] + ["-f", "x"], "-f 'x'"),
        (pr + ["-step_size", "2"], "-step_size '2'"),
        (pr + ["-npp", "x"], "-npp 'x'"),
        (pr + ["-num_parts", "2", "-part_id", "2"], "-part_id '2'"),
        ([*pr[:2], w.tmp / "nope", *pr[3:]], "nope: input folder does not exist"),
        ([*pr[:4], below, *pr[5:]], "afile is a file"),
        (pr[:-2] + ["-device", "tpu"], "-device 'tpu'"),
        (pr[:-4] + ["-f", "1", "-device", "cpu"], "fold 1"),
        (pr + ["-tr", "nnUNetTrainerMoNet_0iters"], "not found"),
        (pr + ["-c", "3d_lowres"], "model folder"),
        # issue #22: scoring rules, cascade configurations
        (ev + ["--nsd-convention", "area"], "--nsd-convention 'area': unknown NSD convention"),
        (bm + ["--nsd-convention", "area"], "--nsd-convention 'area': unknown NSD convention"),
        (bm + ["--postprocessing", "biggest"], "--postprocessing 'biggest': unknown post-processing rule"),
        (bm + ["--postprocessing", "nnunet"], "pred/postprocessing.pkl does not exist"),
        (cv + ["--postprocessing", "biggest"], "--postprocessing 'biggest': unknown post-processing rule"),
        (cv + ["--nsd-convention", "area"], "--nsd-convention 'area': unknown NSD convention"),
        (cv + ["--postprocessing", "nnunet"], "crossval_results_folds_0/postprocessing.pkl does not exist"),
        ([*c2f[:8], "nnUNetTrainer:3d_cascade_fullres", *c2f[9:]], "'3d_cascade_fullres' is a cascade stage"),
        ([*cv[:6], "nnUNetTrainer:3d_cascade_fullres", *cv[7:]], "'3d_cascade_fullres' is a cascade stage"),
        ([*pr[:8], "3d_cascade_fullres", *pr[9:]], "needs -prev_stage_predictions"),
        (["benchmark", "--patch-size", "8", "8", "8", "-tr", "nnUNetTrainerDLKUNetL", "--out", w.tmp / "bm_out"],
         "--patch-size [8, 8, 8] is too small for nnUNetTrainerDLKUNetL"),
    ]
