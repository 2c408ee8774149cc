"""Coarse-to-fine on the test dataset with the trained pair (conftest's ``c2f_models``): ``predict-c2f`` end to end
and its bad input, ``make-coarse-config``, the two-stage mode, ``crossval-c2f`` (the fine stage with oracle models:
tests/integration/test_c2f_box.py)."""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from nnunet_ext.c2f import pipeline as c2f
from tests.helpers import assert_predictions_match_inputs, c2f_cmd, run, shared, spec_of, train


# ------------------------------------------------------------------------------------------------ end to end
@shared("nnunet_dataset", "plain_unet_3d", "c2f_fine_3d")
def c2f_e2e_run(ds, coarse_fold, fine_fold, tmp):
    """``predict-c2f`` of the test images with the trained pair, whole-volume fallback."""
    out = tmp / "pred"
    proc = run(c2f_cmd(ds, out, spec_of(coarse_fold), spec_of(fine_fold), "--coarse-step", "0.9", "-step_size",
                       "0.5", "--fallback", "fine"), ds.env)
    return SimpleNamespace(out=out, proc=proc, tmp=tmp)


@pytest.mark.xdist_group("c2f_pair")
def test_predict_c2f_end_to_end(nnunet_dataset, c2f_e2e_run):
    ds, out, proc = nnunet_dataset, c2f_e2e_run.out, c2f_e2e_run.proc
    assert_predictions_match_inputs(out, ds.images_ts)
    times = json.loads((out / c2f.TIMES_FILE).read_text())
    cases = sorted(p.name[: -len("_0000.nii.gz")] for p in ds.images_ts.glob("*_0000.nii.gz"))
    assert sorted(times["cases"]) == cases
    stages = ("preprocess_s", "coarse_s", "box_s", "fine_s", "export_s")
    for case, rec in times["cases"].items():
        assert rec["coarse_s"] > 0 and rec["fine_s"] > 0 and rec["export_s"] > 0
        assert abs(rec["total_s"] - sum(rec[k] for k in stages)) < 1e-6
        assert f"{case}: preprocess " in proc.stdout
        # a 1-epoch model may find no foreground: either path is fine, but it must be the one reported
        notice = f"{case}: the coarse " in proc.stdout  # "... model found no foreground" / "... gave no box"
        assert notice == (rec["fallback"] == "fine")
        if rec["fallback"]:
            assert rec["boxes"] is None and rec["fine_voxels_fraction"] == 1.0
        else:
            (box,) = rec["boxes"]
            assert all(0 <= lo < hi <= n for (lo, hi), n in zip(box, rec["shape"]))
            # everything outside the box is background
            import SimpleITK as sitk
            seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz")))
            inside = np.zeros(seg.shape, bool)
            inside[tuple(slice(lo, hi) for lo, hi in box)] = True
            assert not np.any(seg[~inside])
    assert not [p for p in c2f_e2e_run.tmp.iterdir() if p.name.startswith(".pred")]  # temp folder gone


@pytest.mark.xdist_group("c2f_pair")
@pytest.mark.parametrize("what", ["missing_fold", "missing_config", "missing_trainer", "bad_spec", "bad_input"])
def test_predict_c2f_bad_input_writes_nothing(nnunet_dataset, c2f_models, tmp_path, monkeypatch, capsys, what):
    """In-process through the CLI's ``main`` (what the console script calls: no import of torch and nnU-Net per
    case); the console script itself runs in test_predict_c2f_refuses_models_of_different_datasets."""
    from nnunet_ext.cli import main

    ds = nnunet_dataset
    for k, v in ds.env.items():
        if k.startswith("nnUNet"):
            monkeypatch.setenv(k, v)
    out = tmp_path / "pred"
    coarse, fine, extra, inp = c2f_models.coarse, c2f_models.fine, [], ds.images_ts
    expect = {"missing_fold": "fold 3", "missing_config": "3d_lowres", "missing_trainer": "nnUNetTrainerNope",
              "bad_spec": "TRAINER:CONFIGURATION", "bad_input": "broken_0000.nii.gz"}[what]
    if what == "missing_fold":
        extra = ["-f", "3"]
    elif what == "missing_config":
        fine = fine.replace("3d_fullres", "3d_lowres")
    elif what == "missing_trainer":
        coarse = "nnUNetTrainerNope:3d_fullres"
    elif what == "bad_spec":
        fine = "nnUNetTrainerPlainUNet"
    elif what == "bad_input":
        inp = tmp_path / "in"
        shutil.copytree(ds.images_ts, inp)
        (inp / "broken_0000.nii.gz").write_bytes(b"not a nifti")
    cmd = c2f_cmd(ds, out, coarse, fine, *extra)
    cmd[cmd.index("-i") + 1] = str(inp)
    assert cmd[0] == "nnunet-ext"
    rc = main(cmd[1:])
    stderr = capsys.readouterr().err
    assert rc == 2, stderr[-2000:]
    err = stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nnunet-ext predict-c2f: error:") and expect in err[0], stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pred")]


@pytest.mark.xdist_group("c2f_pair")
def test_predict_c2f_refuses_models_of_different_datasets(nnunet_dataset, c2f_models, tmp_path):
    """A coarse model of another dataset (same trainer/config names) is refused, naming both datasets."""
    ds = nnunet_dataset
    src = c2f_models.coarse_dir
    other = ds.results / "Dataset992_OtherOrgan" / src.name
    if not other.exists():
        shutil.copytree(src, other)
        plans = json.loads((other / "plans.json").read_text())
        plans["dataset_name"] = "Dataset992_OtherOrgan"
        (other / "plans.json").write_text(json.dumps(plans))
    out = tmp_path / "pred"
    proc = run(c2f_cmd(ds, out, c2f_models.coarse, c2f_models.fine, "--coarse-dataset", "992"), ds.env,
               check=False)
    assert proc.returncode == 2 and "Dataset992_OtherOrgan" in proc.stderr and "Dataset991" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
    # a different label set is refused too
    dj = json.loads((other / "dataset.json").read_text())
    plans = json.loads((other / "plans.json").read_text())
    plans["dataset_name"] = ds.dataset_folder.name
    (other / "plans.json").write_text(json.dumps(plans))
    dj["labels"] = {"background": 0, "liver": 1}
    (other / "dataset.json").write_text(json.dumps(dj))
    proc = run(c2f_cmd(ds, out, c2f_models.coarse, c2f_models.fine, "--coarse-dataset", "992"), ds.env,
               check=False)
    assert proc.returncode == 2 and "label sets" in proc.stderr and not out.exists()
    shutil.rmtree(other.parent)


@pytest.mark.xdist_group("preprocessed")
def test_make_coarse_config(nnunet_dataset):
    ds = nnunet_dataset
    src = json.loads(ds.plans_file.read_text())
    src["plans_name"] = "C2fTestPlans"
    plans_file = ds.plans_file.with_name("C2fTestPlans.json")
    plans_file.write_text(json.dumps(src))
    run(["nnunet-ext", "make-coarse-config", "-d", str(ds.dataset_id), "--plans", "C2fTestPlans"], ds.env)
    plans = json.loads(plans_file.read_text())
    entry = plans["configurations"]["3d_coarse4"]
    assert entry["inherits_from"] == "3d_fullres"
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    cm = PlansManager(plans).get_configuration("3d_coarse4")
    full = PlansManager(plans).get_configuration("3d_fullres")
    assert np.allclose(cm.spacing, np.array(full.spacing) * 4)
    assert cm.data_identifier == "C2fTestPlans_3d_coarse4"
    assert cm.normalization_schemes == full.normalization_schemes  # inherited
    assert all(p <= max(m, 8) * 2 for p, m in zip(cm.patch_size, cm.median_image_size_in_voxels))
    n = cm.network_arch_init_kwargs["n_stages"]
    assert len(cm.network_arch_init_kwargs["strides"]) == n
    # again: refused without --overwrite, one line
    proc = run(["nnunet-ext", "make-coarse-config", "-d", str(ds.dataset_id), "--plans", "C2fTestPlans"], ds.env,
               check=False)
    assert proc.returncode == 2 and "exists already" in proc.stderr
    proc = run(["nnunet-ext", "make-coarse-config", "-d", str(ds.dataset_id), "--plans", "NoSuchPlans"], ds.env,
               check=False)
    assert proc.returncode == 2 and "NoSuchPlans.json" in proc.stderr
    plans_file.unlink()


@pytest.mark.xdist_group("preprocessed")
@pytest.mark.slow
def test_two_stage_end_to_end(nnunet_dataset, tmp_path):
    """make-coarse-config (R = 4) -> preprocess -> coarse + fine (box + 10 voxels, the older margin: predict-c2f then
    uses 10 voxels too) -> predict-c2f --mode two-stage."""
    ds = nnunet_dataset
    run(["nnunet-ext", "make-coarse-config", "-d", str(ds.dataset_id), "--name", "3d_coarse4ts", "--preprocess"],
        {**ds.env, "nnUNet_n_proc_DA": "1"})
    train(ds, "nnUNetTrainerPlainUNet_1epoch_4iters", "3d_coarse4ts")
    train(ds, "nnUNetTrainerPlainUNet_fine10vox_centre_1epoch_4iters", "3d_fullres")
    out = tmp_path / "pred"
    proc = run(["nnunet-ext", "predict-c2f", "-i", str(ds.images_ts), "-o", str(out), "-d", str(ds.dataset_id),
                "--coarse", "nnUNetTrainerPlainUNet_1epoch_4iters:3d_coarse4ts",
                "--fine", "nnUNetTrainerPlainUNet_fine10vox_centre_1epoch_4iters:3d_fullres", "-f", "0",
                "--mode", "two-stage", "-device", "cpu", "--disable_tta"], ds.env)
    assert_predictions_match_inputs(out, ds.images_ts)
    times = json.loads((out / c2f.TIMES_FILE).read_text())
    for case, rec in times["cases"].items():
        assert rec["mode"] == "two-stage"
        assert (rec["fallback"] is not None) == (f"{case}: the coarse " in proc.stdout)  # the no-box notice
        if not rec["fallback"]:
            assert len(rec["boxes"]) == 2
    assert times["margin_vox"] == 10 and times["margin_mm"] is None  # the fine trainer's own margin


# ------------------------------------------------------------------------------------------------ crossval-c2f
@shared("nnunet_dataset", "plain_unet_3d", "c2f_fine_3d")
def crossval_c2f_run(ds, coarse_fold, fine_fold, tmp):
    """``crossval-c2f`` of the trained pair on fold 0, then ``benchmark --cv`` with the pair as a row."""
    out = tmp / "C2Fpair"
    proc = run(["nnunet-ext", "crossval-c2f", "-d", str(ds.dataset_id), "--coarse", spec_of(coarse_fold), "--fine",
                spec_of(fine_fold), "-f", "0", "-device", "cpu", "--disable_tta", "-o", str(out)], ds.env)
    coarse_tr, _, plans = spec_of(coarse_fold).split(":")
    bench = run(["nnunet-ext", "benchmark", "--skip-models", "--cv", "-d", str(ds.dataset_id), "-c", "3d_fullres",
                 "-p", plans, "--folds", "0", "-tr", coarse_tr, f"C2F={out}", "--reference", coarse_tr, "--out", str(tmp / "bench")],
                ds.env)
    return SimpleNamespace(out=out, proc=proc, bench=bench, tmp=tmp)


@pytest.mark.xdist_group("c2f_pair")
def test_crossval_c2f_scores_the_pair_and_benchmark_reads_it(nnunet_dataset, c2f_models, crossval_c2f_run):
    """Coarse fold 0 + fine fold 0 on fold 0's validation cases: nnU-Net's layout with summary.json; benchmark --cv
    takes the folder as a row beside a trainer. The fine trainer's own final validation was skipped, with a note."""
    ds, out, proc = nnunet_dataset, crossval_c2f_run.out, crossval_c2f_run.proc
    splits = json.loads((ds.preprocessed / ds.dataset_folder.name / "splits_final.json").read_text())
    val = sorted(splits[0]["val"])
    vdir = out / "fold_0" / "validation"
    assert sorted(p.name[: -len(".nii.gz")] for p in vdir.glob("*.nii.gz")) == val
    summary = json.loads((vdir / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == len(val)
    assert {"Dice", "HD95", "NSD"} <= set(summary["metric_per_case"][0]["metrics"]["1"])
    assert sorted(json.loads((vdir / c2f.TIMES_FILE).read_text())["cases"]) == val
    pair = json.loads((out / "crossval_c2f.json").read_text())
    assert pair["coarse"] == c2f_models.coarse and pair["folds"] == [0] and (out / "plans.json").is_file()
    # the scoring rules and the box options are recorded (issue 22)
    assert pair["postprocessing"] == {"rule": "none", "pkl": None} and pair["nsd_convention"] == "voxel"
    assert {"margin_mm", "min_component_fraction", "nsd_tolerance_mm"} <= set(pair)
    assert summary["scoring"]["postprocessing"]["rule"] == "none"
    assert "fold 0: mean Dice 1: " in proc.stdout
    fine_fold = c2f_models.fine_dir / "fold_0"
    assert (fine_fold / "validation_skipped_c2f.txt").is_file() and not (fine_fold / "validation" / "summary.json").exists()
    # benchmark --cv with the pair as a row beside the coarse trainer (run by the job)
    assert f"C2F: folds [0], {len(val)} cases" in crossval_c2f_run.bench.stdout, crossval_c2f_run.bench.stdout[-3000:]
    assert "scoring: post-processing none; NSD voxel convention" in crossval_c2f_run.bench.stdout


@pytest.mark.xdist_group("c2f_pair")
@pytest.mark.parametrize("what", ["missing_fold", "no_val_cases", "other_dataset", "label_sets"])
def test_crossval_c2f_bad_input_writes_nothing(nnunet_dataset, c2f_models, tmp_path, monkeypatch, capsys, what):
    from nnunet_ext.cli import main

    ds = nnunet_dataset
    for k, v in ds.env.items():
        if k.startswith("nnUNet"):
            monkeypatch.setenv(k, v)
    coarse, fine, folds = c2f_models.coarse, c2f_models.fine, ["0"]
    models = ds.results / ds.dataset_folder.name
    if what == "missing_fold":
        folds, expect = ["0", "1"], "fold 1 missing"
    elif what == "no_val_cases":
        pre = tmp_path / "pre" / ds.dataset_folder.name
        pre.mkdir(parents=True)
        (pre / "splits_final.json").write_text(json.dumps([{"train": ["a"], "val": []}]))
        monkeypatch.setenv("nnUNet_preprocessed", str(pre.parent))
        expect = "fold 0 has no validation cases"
    else:
        spec, src, plans_name = (coarse, c2f_models.coarse_dir, "OtherDataset") if what == "other_dataset" else \
            (fine, c2f_models.fine_dir, "OtherLabels")
        trainer = spec.split(":")[0]
        copy = models / f"{trainer}__{plans_name}__3d_fullres"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(src, copy)
        if what == "other_dataset":
            plans = json.loads((copy / "plans.json").read_text())
            plans["dataset_name"] = "Dataset992_OtherOrgan"
            (copy / "plans.json").write_text(json.dumps(plans))
            coarse, expect = f"{trainer}:3d_fullres:{plans_name}", "Dataset992_OtherOrgan"
        else:
            dj = json.loads((copy / "dataset.json").read_text())
            dj["labels"] = {"background": 0, "liver": 1}
            (copy / "dataset.json").write_text(json.dumps(dj))
            fine, expect = f"{trainer}:3d_fullres:{plans_name}", "different label sets"
    out = tmp_path / "out"
    rc = main(["crossval-c2f", "-d", str(ds.dataset_id), "--coarse", coarse, "--fine", fine, "-f", *folds,
               "-device", "cpu", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("nnunet-ext crossval-c2f: error:") and expect in err[0], err
    assert not out.exists()
    if what in ("other_dataset", "label_sets"):
        shutil.rmtree(copy)
