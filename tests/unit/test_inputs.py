"""Bad input is a one-line error, exit status 2, nothing written (issue 13, Build 1-2): nnunet_ext/checks/ and the
calls to it in predict-c2f, evaluate, benchmark, check-inputs and the train/predict pass-throughs.

Tiny synthetic NIfTI files written here: a truncated .nii.gz (bytes cut off: SimpleITK zero-fills it silently), NaN
and Inf voxels, an extra channel file, a 4D and a 2D image, a prediction whose origin is 100 mm off. The commands run
in-process (``nnunet_ext.cli.main``) against a fake trained-model folder: every check here happens before a network
is loaded."""
from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest

from nnunet_ext import checks as inputs
from nnunet_ext.benchmark.bad_inputs import (DS, ORIGIN, SPACING, bad_cases, image, label, make_world, tree, truncate,
                                           write_image)
from nnunet_ext.errors import UserError


@pytest.fixture
def world(tmp_path, monkeypatch):
    """nnUNet_raw/preprocessed/results with a fake 1-channel model (3d_fullres and 2d configurations; fold_0 has a
    checkpoint file), a good input folder, and gt/pred label folders for evaluate (:func:`make_world`)."""
    return make_world(tmp_path, monkeypatch.setenv)


def run_cli(argv, capsys):
    """(exit status, stderr lines) of ``nnunet-ext ARGV`` run in this process."""
    from nnunet_ext.cli import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        rc = e.code
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    return rc, err


def model(w, conf="3d_fullres"):
    return SimpleNamespace(dataset_json=w.dataset_json, plans=w.plans, configuration=conf)


# ------------------------------------------------------------------------------------------------ one file
def test_truncated_gzip_is_detected_although_simpleitk_reads_it(world):
    import SimpleITK as sitk

    f = truncate(write_image(world.tmp / "t_0000.nii.gz", image(0, (20, 40, 40))))
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))  # what nnU-Net would predict: zero-filled, no error
    assert arr.shape == (20, 40, 40) and np.count_nonzero(arr == 0) > arr.size // 4
    with pytest.raises(UserError, match=r"t_0000\.nii\.gz: file is truncated"):
        inputs.inspect_file(f)


def test_truncated_uncompressed_nifti_and_garbage(world):
    f = write_image(world.tmp / "u.nii", image())
    assert inputs.inspect_file(f).size == (12, 10, 6)
    truncate(f, 0.9)
    with pytest.raises(UserError, match=r"u\.nii: file is truncated: \d+ bytes, its NIfTI header needs \d+"):
        inputs.inspect_file(f)
    (world.tmp / "g.nii.gz").write_bytes(b"\x1f\x8b" + os.urandom(200))
    with pytest.raises(UserError, match=r"g\.nii\.gz: file is truncated or corrupt"):
        inputs.inspect_file(world.tmp / "g.nii.gz")
    (world.tmp / "e.nii.gz").write_bytes(b"")
    with pytest.raises(UserError, match="e.nii.gz: file is empty"):
        inputs.inspect_file(world.tmp / "e.nii.gz")


@pytest.mark.parametrize("ending", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_nonfinite_voxels_are_counted(world, ending):
    a = image()
    a[0, 0, :5] = np.nan
    a[2, 3, 4] = np.inf
    a[5, 9, 11] = -np.inf
    f = write_image(world.tmp / f"n_0000{ending}", a)
    info = inputs.inspect_file(f)
    assert info.nonfinite == 7
    with pytest.raises(UserError, match=r"n_0000\S*: 7 non-finite \(NaN/Inf\) voxel"):
        inputs.check_finite(info)
    assert inputs.inspect_file(write_image(world.tmp / f"ok{ending}", image())).nonfinite == 0


def test_geometry_tolerances():
    base = inputs.FileInfo("a", 3, (4, 5, 6), SPACING, ORIGIN, (1, 0, 0, 0, 1, 0, 0, 0, 1), 0)
    same = base.__class__(**{**base.__dict__, "origin": tuple(np.float32(ORIGIN).astype(float))})
    assert inputs.geometry_difference(same, base) is None  # float32 round-off of NIfTI's origin
    for field, value, what in (("size", (4, 5, 7), "size"), ("spacing", (0.8, 0.9, 2.6), "spacing"),
                               ("origin", (ORIGIN[0] + 100, *ORIGIN[1:]), "100 mm apart"),
                               ("direction", (1, 0, 0, 0, 0, 1, 0, 1, 0), "direction")):
        other = base.__class__(**{**base.__dict__, field: value})
        assert what in inputs.geometry_difference(other, base)


# ------------------------------------------------------------------------------------------------ prediction inputs
def test_good_inputs_pass_for_3d_2d_and_inherited_configurations(world):
    for conf in ("3d_fullres", "2d", "3d_child"):
        cases = inputs.check_prediction_inputs(world.inp, model(world, conf))
        assert sorted(cases) == ["case0", "case1"] and all(len(v) == 1 for v in cases.values())


@pytest.mark.parametrize("what", ["extra_channel", "4d", "2d_for_3d", "nan", "truncated", "misnamed", "channel_geometry"])
def test_bad_prediction_inputs(world, what):
    inp = world.inp
    conf, channels = "3d_fullres", 1
    if what == "extra_channel":
        culprit = write_image(inp / "case1_0001.nii.gz", image(5))
        expect = "channel 0001, but the model takes 1 channel"
    elif what == "4d":
        culprit = write_image(inp / "case1_0000.nii.gz", image(1, (2, 6, 10, 12)))
        expect = "4D image"
    elif what == "2d_for_3d":
        culprit = write_image(inp / "case1_0000.nii.gz", image(1, (10, 12)))
        expect = "2D image .* takes 3D images"
    elif what == "nan":
        a = image(1)
        a[1, 1, 1] = np.nan
        culprit = write_image(inp / "case1_0000.nii.gz", a)
        expect = "1 non-finite"
    elif what == "truncated":
        culprit = truncate(inp / "case1_0000.nii.gz")
        expect = "truncated"
    elif what == "misnamed":
        culprit = write_image(inp / "case1.nii.gz", image(1))
        expect = "is not named CASE_XXXX"
    else:
        channels = 2
        world.dataset_json["channel_names"] = {"0": "CT", "1": "PET"}
        for i in range(2):
            write_image(inp / f"case{i}_0001.nii.gz", image(i + 2))
        culprit = write_image(inp / "case1_0001.nii.gz", image(3), origin=(0, 0, 0))
        expect = "channel files of one case differ .* origin"
    assert len(world.dataset_json["channel_names"]) == channels
    with pytest.raises(UserError, match=expect) as e:
        inputs.check_prediction_inputs(inp, model(world, conf))
    assert culprit.name in str(e.value) and "\n" not in str(e.value)


def test_two_d_model_takes_2d_and_3d_images(world):
    write_image(world.inp / "case1_0000.nii.gz", image(1, (10, 12)))
    assert len(inputs.check_prediction_inputs(world.inp, model(world, "2d"))) == 2


# ------------------------------------------------------------------------------------------------ evaluation
def test_evaluate_refuses_prediction_100mm_off(world, capsys):
    """Scored Dice 1.0 before; now exit 2, one line naming the file and the difference, no summary written."""
    write_image(world.pred / "case1.nii.gz", label(), origin=(ORIGIN[0] + 100, *ORIGIN[1:]))
    before = tree(world.tmp)
    rc, err = run_cli(["evaluate", world.gt, world.pred, "-djfile", world.dj, "-pfile", world.pj], capsys)
    assert rc == 2 and len(err) == 1, err
    assert "pred/case1.nii.gz" in err[0] and "origin" in err[0] and "100 mm apart" in err[0]
    assert tree(world.tmp) == before
    # the same prediction written on the reference's grid passes (test_metrics.py runs whole evaluations)
    write_image(world.pred / "case1.nii.gz", label())
    assert inputs.check_evaluation_folders(world.gt, [world.pred], ".nii.gz") == 2


def test_check_inputs_command(world, capsys):
    rc, err = run_cli(["check-inputs", "-i", world.inp, "-d", DS, "-c", "3d_fullres"], capsys)
    assert rc == 0, err
    rc, err = run_cli(["check-inputs", "-i", world.pred, "--reference", world.gt], capsys)
    assert rc == 0, err
    truncate(world.inp / "case0_0000.nii.gz")
    rc, err = run_cli(["check-inputs", "-i", world.inp, "--channels", "1"], capsys)
    assert rc == 2 and len(err) == 1 and "case0_0000.nii.gz: file is truncated" in err[0], err


# ------------------------------------------------------------------------------------------------ names
def test_malformed_schedule_names_are_not_found():
    from nnunet_ext import trainers

    for name in ("nnUNetTrainerMoNet_0epochs", "nnUNetTrainerMoNet_0iters", "nnUNetTrainerMoNet_1epoch_0iters",
                 "nnUNetTrainer_0epochs", "nnUNetTrainerMoNet_5epochs_10epochs"):
        assert not hasattr(trainers, name)
        with pytest.raises(AttributeError, match=name):
            trainers.get_trainer(name)
    assert trainers.get_trainer("nnUNetTrainerMoNet_3epochs_2iters").hparams["num_epochs"] == 3


def test_stock_lookup_of_0epochs_is_nnunets_not_found(world):
    """The lookup stock nnUNetv2_train does first (get_trainer_from_args): nnU-Net's own 'Could not find requested
    nnunet trainer' RuntimeError, raised with no frame of nnunet_ext on the stack."""
    import traceback

    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    for name in ("nnUNetTrainerMoNet_0epochs", "nnUNetTrainerDMCNet_1epoch_0iters"):
        with pytest.raises(RuntimeError, match=f"Could not find requested nnunet trainer {name}") as e:
            recursive_find_trainer_class_by_name(name)
        frames = [f.filename for f in traceback.extract_tb(e.value.__traceback__)]
        assert not [f for f in frames if "nnunet_ext" in f or "/trainers/" in f], frames
        assert e.value.__context__ is None or not isinstance(e.value.__context__, ValueError)
    assert recursive_find_trainer_class_by_name("nnUNetTrainerMoNet_2epochs").__name__ == "nnUNetTrainerMoNet_2epochs"


# ------------------------------------------------------------------------------------------------ arguments


def test_bad_arguments_one_line_exit_2_nothing_written(world, capsys):
    cases = bad_cases(world)
    assert len(cases) >= 40
    before = tree(world.tmp)
    failures = []
    for argv, expect in cases:
        try:
            rc, err = run_cli(argv, capsys)
        except Exception as e:  # noqa: BLE001 - a traceback is a failure of this test, listed with the others
            rc, err = "raised", [f"{type(e).__name__}: {e}"[:300]]
        if rc != 2 or len(err) != 1 or expect not in err[0] or tree(world.tmp) != before:
            failures.append((argv[:1] + argv[-3:], rc, err[-3:], expect))
    assert not failures, "\n".join(map(str, failures))


@pytest.mark.parametrize("what", ["truncated", "nan", "extra_channel", "4d"])
def test_predict_pass_through_and_c2f_check_inputs_before_predicting(world, capsys, what):
    f = world.inp / "case1_0000.nii.gz"
    if what == "truncated":
        truncate(f)
    elif what == "nan":
        a = image(1)
        a[0, 0, 0] = np.nan
        write_image(f, a)
    elif what == "extra_channel":
        f = write_image(world.inp / "case1_0001.nii.gz", image(3))
    else:
        write_image(f, image(1, (2, 6, 10, 12)))
    before = tree(world.tmp)
    for argv in (["predict-c2f", "-i", world.inp, "-o", world.tmp / "o", "-d", DS, "--coarse",
                  "nnUNetTrainer:3d_fullres", "--fine", "nnUNetTrainer:3d_fullres", "--device", "cpu"],
                 ["predict", "-i", world.inp, "-o", world.tmp / "o", "-d", DS, "-c", "3d_fullres", "-f", "0",
                  "-device", "cpu"]):
        rc, err = run_cli(argv, capsys)
        assert rc == 2 and len(err) == 1 and f.name in err[0], err
        assert tree(world.tmp) == before


def test_benchmark_checks_prediction_folders_first(world, capsys):
    write_image(world.pred / "case0.nii.gz", label(), spacing=(0.8, 0.9, 3.0))
    before = tree(world.tmp)
    rc, err = run_cli(["benchmark", "--skip-models", "--pred", f"nnUNetTrainer={world.pred}", "--labels", world.gt,
                       "-djfile", world.dj, "-pfile", world.pj, "--reference", "nnUNetTrainer",
                       "--out", world.tmp / "bm"], capsys)
    assert rc == 2 and len(err) == 1 and "case0.nii.gz" in err[0] and "spacing" in err[0], err
    assert tree(world.tmp) == before


def test_rgb_png_holds_its_channels(world):
    """nnU-Net's NaturalImage2DIO reads an RGB .png as three channels from one _0000 file: not a missing channel."""
    inp = world.tmp / "png"
    inp.mkdir()
    write_image(inp / "img_0000.png", np.full((10, 12, 3), 7, np.uint8), is_vector=True)
    world.dataset_json.update(file_ending=".png", channel_names={"0": "R", "1": "G", "2": "B"})
    assert list(inputs.check_prediction_inputs(inp, model(world, "2d"))) == ["img"]
    world.dataset_json["channel_names"] = {"0": "gray"}
    with pytest.raises(UserError, match=r"img_0000\.png: 3 channel\(s\) in 1 file\(s\), but the model takes 1"):
        inputs.check_prediction_inputs(inp, model(world, "2d"))


def test_good_pass_through_arguments_pass(world):
    """The pre-checks of ``nnunet-ext train/predict`` accept what nnU-Net accepts (and leave -h and missing
    positionals to nnU-Net's own argparse)."""
    for argv in ([DS, "3d_fullres", "0", "-tr", "nnUNetTrainerMoNet_1epoch_2iters", "-device", "cpu"],
                 [DS, "2d", "all", "--npz", "-num_gpus", "1"], ["-h"], [DS]):
        inputs.check_train_args(argv)
    for argv in (["-i", world.inp, "-o", world.tmp / "p", "-d", DS, "-c", "3d_fullres", "-f", "0", "-device", "cpu",
                  "-step_size", "0.5", "-npp", "1", "-nps", "1"],
                 ["-i", world.inp, "-o", world.tmp / "p", "-d", DS, "-c", "2d", "-f", "0"], ["-h"]):
        inputs.check_predict_args([str(a) for a in argv])
    assert not (world.tmp / "p").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_checkpoint_is_named_before_predicting(world, capsys, damage):
    """An interrupted copy of a model folder: predict (pass-through), predict-c2f and crossval-c2f name the
    checkpoint, exit 2, write nothing; a complete checkpoint passes the same check."""
    from nnunet_ext.checks import check_checkpoint

    ck = world.tmp / "res" / DS / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "fold_0" / "checkpoint_final.pth"
    check_checkpoint(ck)  # the world's checkpoint is complete
    if damage == "truncated":
        truncate(ck, keep=0.7)
    else:
        ck.write_bytes(b"PK\x03\x04" + bytes(200))
    pair = ["--coarse", "nnUNetTrainer:3d_fullres", "--fine", "nnUNetTrainer:3d_fullres", "-f", "0", "--device", "cpu"]
    before = tree(world.tmp)
    for argv in (["predict", "-i", world.inp, "-o", world.tmp / "o", "-d", DS, "-c", "3d_fullres", "-f", "0",
                  "-device", "cpu"],
                 ["predict-c2f", "-i", world.inp, "-o", world.tmp / "o", "-d", DS, *pair],
                 ["crossval-c2f", "-o", world.tmp / "o", "-d", DS, *pair]):
        rc, err = run_cli(argv, capsys)
        assert rc == 2 and len(err) == 1 and str(ck) in err[0] and "checkpoint" in err[0], (argv[0], err)
        assert tree(world.tmp) == before


def test_crossval_c2f_records_scoring_rules_before_predicting(world, monkeypatch, capsys):
    """crossval_c2f.json names the margin, the component fraction, the post-processing rule and the NSD convention
    (written once every input is checked; the prediction itself is stopped here)."""
    import json

    from nnunet_ext.c2f import crossval

    (world.tmp / "raw" / DS / "imagesTr").mkdir(parents=True)
    write_image(world.tmp / "raw" / DS / "imagesTr" / "case0_0000.nii.gz", image(0))
    (world.tmp / "pre" / DS / "gt_segmentations").mkdir()
    write_image(world.tmp / "pre" / DS / "gt_segmentations" / "case0.nii.gz", label())

    def stop(*a, **k):
        raise RuntimeError("stop before loading weights")

    monkeypatch.setattr(crossval, "load_predictor", stop)
    out = world.tmp / "cv"
    with pytest.raises(RuntimeError, match="stop before"):
        crossval.crossval_c2f(DS, "nnUNetTrainer:3d_fullres", "nnUNetTrainer:3d_fullres", folds=["0"], output=out,
                              device="cpu", margin_mm=7.5, min_component_fraction=0.1, postprocessing="largest",
                              nsd_convention="surfel", nsd_tolerance_mm=1.5)
    pair = json.loads((out / crossval.PAIR_FILE).read_text())
    assert pair["margin_mm"] == 7.5 and pair["min_component_fraction"] == 0.1
    assert pair["postprocessing"] == {"rule": "largest", "pkl": None}
    assert pair["nsd_convention"] == "surfel" and pair["nsd_tolerance_mm"] == 1.5
