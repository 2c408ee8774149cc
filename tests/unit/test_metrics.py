"""Surface metrics (HD95, NSD) and ``nnunet-ext evaluate`` (nnunet_ext.evaluation).

Analytic cases (boxes shifted by k voxels, concentric spheres) under anisotropic spacing, the empty-mask conventions,
agreement with an independent distance-transform reference written here (scipy's EDT on the surfaces) and with
MONAI's public functions, the folder evaluation on a tiny synthetic NIfTI folder (nnU-Net's layout + CSV), the
trained-model fold evaluation and the CLI's handling of bad input (exit 2, nothing written)."""
from __future__ import annotations

import csv
import json
import math
import os
import warnings

import numpy as np
import pytest
from scipy import ndimage

from nnunet_ext.evaluation.table import METRICS, fmt_mean, image_diagonal_mm
from nnunet_ext.evaluation.case import surface_metrics
from nnunet_ext.evaluation.summary import (FoldResults, compute_metrics_on_folder_with_surface, evaluate_folder,
                                          evaluate_trained_model_folds)


# ------------------------------------------------------------------------------------------------ helpers
def box(shape, lo, hi):
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def ball(shape, center_vox, radius_mm, spacing):
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in zip(shape, center_vox, spacing)], indexing="ij")
    return sum(g ** 2 for g in grids) <= radius_mm ** 2


def reference_surface_metrics(ref, pred, spacing, tol):
    """Independent reference: surface = mask minus its 6-connected erosion (outside = background), distances of each
    surface voxel to the other surface by scipy's exact EDT with the spacing (full volume, no cropping)."""
    ref, pred = ref.astype(bool), pred.astype(bool)
    if not ref.any() and not pred.any():  # both empty: excluded (Metrics Reloaded)
        return {"HD95": float("nan"), "NSD": float("nan")}
    if not ref.any() or not pred.any():  # one empty: worst case
        return {"HD95": float(np.sqrt(sum((n * s) ** 2 for n, s in zip(ref.shape, spacing)))), "NSD": 0.0}
    s_ref = ref & ~ndimage.binary_erosion(ref)
    s_pred = pred & ~ndimage.binary_erosion(pred)
    d_ref_to_pred = ndimage.distance_transform_edt(~s_pred, sampling=spacing)[s_ref]
    d_pred_to_ref = ndimage.distance_transform_edt(~s_ref, sampling=spacing)[s_pred]
    hd95 = max(np.percentile(d_ref_to_pred, 95), np.percentile(d_pred_to_ref, 95))
    nsd = ((d_ref_to_pred <= tol).sum() + (d_pred_to_ref <= tol).sum()) / (len(d_ref_to_pred) + len(d_pred_to_ref))
    return {"HD95": float(hd95), "NSD": float(nsd)}


def random_shape(rng, shape, sigma, frac):
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return noise > np.quantile(noise, 1 - frac)


# ------------------------------------------------------------------------------------------------ analytic
SPACING = (3.0, 0.7, 1.1)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3])
def test_shifted_box_hd95_is_k_times_spacing(axis, k):
    """A box shifted by k voxels along `axis`: every surface distance is <= k*s_axis and the whole face opposite
    the shift (> 5% of the surface) is at exactly k*s_axis, so HD95 == k*s_axis exactly."""
    shape, lo, hi = (16, 24, 22), [3, 4, 5], [11, 16, 15]
    ref = box(shape, lo, hi)
    lo2, hi2 = list(lo), list(hi)
    lo2[axis] += k
    hi2[axis] += k
    pred = box(shape, lo2, hi2)
    res = surface_metrics(ref, pred, SPACING)
    assert res["HD95"] == pytest.approx(k * SPACING[axis], rel=1e-6)
    # the same spacing on the wrong axis gives a different number: spacing is used per axis
    assert surface_metrics(ref, pred, SPACING[::-1])["HD95"] == pytest.approx(k * SPACING[::-1][axis], rel=1e-6)
    # NSD: tolerance at the largest distance -> every surface voxel counts
    assert surface_metrics(ref, pred, SPACING, nsd_tolerance_mm=k * SPACING[axis])["NSD"] == pytest.approx(1.0)
    assert surface_metrics(ref, pred, SPACING, nsd_tolerance_mm=k * SPACING[axis] * 0.999)["NSD"] < 1.0


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_shifted_box_nsd_below_smallest_spacing_counts_coincident_surface(axis):
    """Shift by 1 voxel, tolerance below every spacing: only coincident surface voxels count. For a box of n voxels
    along the shift axis and a cross-section rim of R voxels, each surface has R*(n-1) voxels on the other surface
    out of S = 2*A + R*(n-2) (A = cross-section area), so NSD = R*(n-1)/S."""
    shape, lo, hi = (16, 24, 22), [3, 4, 5], [11, 16, 15]
    size = [b - a for a, b in zip(lo, hi)]
    ref = box(shape, lo, hi)
    lo2, hi2 = list(lo), list(hi)
    lo2[axis] += 1
    hi2[axis] += 1
    pred = box(shape, lo2, hi2)
    n = size[axis]
    c1, c2 = [size[a] for a in range(3) if a != axis]
    area, rim = c1 * c2, c1 * c2 - (c1 - 2) * (c2 - 2)
    expected = rim * (n - 1) / (2 * area + rim * (n - 2))
    res = surface_metrics(ref, pred, SPACING, nsd_tolerance_mm=0.5 * min(SPACING))
    assert res["NSD"] == pytest.approx(expected, rel=1e-6)


def test_concentric_spheres_hd95_is_radius_difference():
    """Spheres of radius r and r+d (mm) under anisotropic spacing: HD95 = d within the voxel discretisation
    (at most the largest spacing); NSD is 1 at a tolerance beyond that and small well below d."""
    spacing = (1.5, 0.6, 0.8)
    shape = (30, 70, 56)
    center = (15, 35, 28)
    r, d = 12.0, 4.0
    inner, outer = ball(shape, center, r, spacing), ball(shape, center, r + d, spacing)
    res = surface_metrics(inner, outer, spacing, nsd_tolerance_mm=2.0)
    assert abs(res["HD95"] - d) <= max(spacing)
    assert res == surface_metrics(outer, inner, spacing, nsd_tolerance_mm=2.0)  # symmetric
    assert surface_metrics(inner, outer, spacing, nsd_tolerance_mm=d + max(spacing))["NSD"] == pytest.approx(1.0)
    assert surface_metrics(inner, outer, spacing, nsd_tolerance_mm=d / 4)["NSD"] < 0.1
    # a larger gap gives a proportionally larger HD95
    res2 = surface_metrics(inner, ball(shape, center, r + 2 * d, spacing), spacing)
    assert abs(res2["HD95"] - 2 * d) <= max(spacing)


def test_identical_masks():
    m = ball((20, 30, 30), (10, 15, 15), 6.0, (1.2, 0.9, 0.9))
    assert surface_metrics(m, m, (1.2, 0.9, 0.9), nsd_tolerance_mm=0.0) == {"HD95": 0.0, "NSD": 1.0}


# ------------------------------------------------------------------------------------------------ conventions
def test_empty_mask_conventions():
    """Metrics Reloaded: both empty -> excluded (NaN); exactly one empty -> worst case (HD95 = image diagonal in mm,
    NSD 0), never a perfect or a missing HD95 for a missed structure."""
    z = np.zeros((8, 9, 10), dtype=bool)
    m = box(z.shape, (2, 2, 2), (5, 6, 7))
    both = surface_metrics(z, z, (1, 1, 1))
    assert math.isnan(both["HD95"]) and math.isnan(both["NSD"])
    diagonal = math.sqrt((8 * 2.0) ** 2 + 9 ** 2 + 10 ** 2)
    for ref, pred in ((m, z), (z, m)):
        res = surface_metrics(ref, pred, (2.0, 1.0, 1.0))
        assert res["HD95"] == pytest.approx(diagonal) and res["NSD"] == 0.0
        assert isinstance(res["HD95"], float) and isinstance(res["NSD"], float)
        # the worst value is worse than any real miss-placement inside the image
        far = box(z.shape, (5, 6, 7), (8, 9, 10))
        assert res["HD95"] > surface_metrics(m, far, (2.0, 1.0, 1.0))["HD95"]
    # 2D in nnU-Net's (1, H, W) layout: the diagonal of the measured axes (not the dummy 999 mm one)
    res = surface_metrics(m[2:3], z[:1], (999.0, 0.5, 2.0))
    assert res["HD95"] == pytest.approx(math.hypot(9 * 0.5, 10 * 2.0))


def test_one_table_of_metrics():
    assert list(METRICS) == ["Dice", "HD95", "NSD"]
    assert METRICS["HD95"].better == "lower" and METRICS["Dice"].better == METRICS["NSD"].better == "higher"
    assert METRICS["Dice"].worst(123.0) == 0.0 and METRICS["NSD"].worst(123.0) == 0.0
    assert METRICS["HD95"].worst(123.0) == 123.0 == image_diagonal_mm((41, 1), (3.0, 0.0))
    assert fmt_mean("HD95", float("nan"), 1.0, 2) == "n/a"
    assert fmt_mean("HD95", 12.345, 1.5, 2) == "12.35 ± 1.50 (2 worst)"
    assert fmt_mean("Dice", 0.5) == "0.500"


def test_bad_arguments():
    m = np.ones((4, 4, 4), bool)
    with pytest.raises(ValueError, match="shape"):
        surface_metrics(m, m[:3], (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        surface_metrics(m, m, (1, 1))
    with pytest.raises(ValueError, match="spacing"):
        surface_metrics(m, m, (1, 0, 1))
    with pytest.raises(ValueError, match="tolerance"):
        surface_metrics(m, m, (1, 1, 1), nsd_tolerance_mm=-1)


# ------------------------------------------------------------------------------------------------ independent reference
@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_independent_edt_reference_and_monai_public_functions(seed):
    """Random smooth blobs (some touching the volume border) vs (1) an EDT reference computed here on the full
    volume and (2) MONAI's compute_hausdorff_distance / compute_surface_dice called directly."""
    import torch
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    rng = np.random.default_rng(seed)
    shape = (14, 30, 26) if seed % 2 else (40, 36)
    spacing = tuple(rng.uniform(0.4, 3.0, size=len(shape)))
    ref = random_shape(rng, shape, 2.5, rng.uniform(0.05, 0.3))
    pred = ref ^ random_shape(rng, shape, 1.5, 0.05) if seed % 3 == 0 else random_shape(rng, shape, 2.5, 0.2)
    tol = float(rng.uniform(0.5, 4.0))
    got = surface_metrics(ref, pred, spacing, nsd_tolerance_mm=tol)
    exp = reference_surface_metrics(ref, pred, spacing, tol)
    assert got["HD95"] == pytest.approx(exp["HD95"], rel=1e-5, abs=1e-5)
    assert got["NSD"] == pytest.approx(exp["NSD"], rel=1e-6, abs=1e-6)
    assert got["HD95"] > 0 and 0 < got["NSD"] < 1  # not a degenerate case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y, yp = torch.from_numpy(ref)[None, None], torch.from_numpy(pred)[None, None]
        hd = compute_hausdorff_distance(yp, y, include_background=True, percentile=95, spacing=list(spacing)).item()
        nsd = compute_surface_dice(yp, y, [tol], include_background=True, spacing=list(spacing)).item()
    assert got["HD95"] == pytest.approx(hd, rel=1e-6)
    assert got["NSD"] == pytest.approx(nsd, rel=1e-6)


def test_axis_permutation_and_nnunet_2d_layout():
    rng = np.random.default_rng(7)
    ref, pred = random_shape(rng, (10, 20, 16), 2.0, 0.2), random_shape(rng, (10, 20, 16), 2.0, 0.2)
    sp = (2.5, 0.5, 1.0)
    a = surface_metrics(ref, pred, sp)
    b = surface_metrics(ref.transpose(2, 0, 1), pred.transpose(2, 0, 1), (sp[2], sp[0], sp[1]))
    assert a["HD95"] == pytest.approx(b["HD95"]) and a["NSD"] == pytest.approx(b["NSD"])
    # nnU-Net's 2D layout (1, H, W) with the dummy 999 spacing == the 2D computation
    r2, p2 = ref[5], pred[5]
    assert surface_metrics(r2[None], p2[None], (999.0, 0.5, 1.0)) == surface_metrics(r2, p2, (0.5, 1.0))


def test_ignore_mask_drops_surface_points_inside_it():
    shape, sp = (12, 20, 20), (2.0, 1.0, 1.0)
    ref = box(shape, (3, 5, 5), (9, 15, 15))
    pred = ref.copy()
    pred[3:9, 5:15, 15:18] = True  # a bump of 3 voxels along the last axis
    assert surface_metrics(ref, pred, sp)["HD95"] > 0
    ignore = np.zeros(shape, bool)
    ignore[:, :, 14:] = True  # covers the bump and ref's face there
    res = surface_metrics(ref, pred, sp, ignore_mask=ignore)
    assert res == {"HD95": 0.0, "NSD": 1.0}
    # a prediction lying only in ignored voxels is no prediction: both empty / reference only
    only_ignored = box(shape, (3, 5, 16), (9, 15, 18))
    res = surface_metrics(np.zeros(shape, bool), only_ignored, sp, ignore_mask=ignore)
    assert math.isnan(res["HD95"]) and math.isnan(res["NSD"])
    res = surface_metrics(ref, only_ignored, sp, ignore_mask=ignore)
    assert res["HD95"] == pytest.approx(image_diagonal_mm(shape, sp)) and res["NSD"] == 0.0


# ------------------------------------------------------------------------------------------------ folders
SITK_SPACING = (0.8, 0.9, 2.5)  # x, y, z as SimpleITK has it; nnU-Net's array order is z, y, x


def _write(arr, path, spacing=SITK_SPACING):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))


def make_folders(tmp_path, n_cases=3):
    """gt/ and pred/ with 3 cases (labels 1, 2), dataset.json, minimal plans.json. Case 0: perfect; case 1: label
    2 shifted by 2 slices along z (array axis 0, 2.5 mm); case 2: label 2 missing in the prediction."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    shape = (12, 20, 18)
    for i in range(n_cases):
        g = np.zeros(shape, np.uint8)
        g[box(shape, (2, 3, 3), (9, 12, 10))] = 1
        g[box(shape, (3, 13, 11), (7, 17, 16))] = 2
        p = g.copy()
        if i == 1:
            p[p == 2] = 0
            p[box(shape, (5, 13, 11), (9, 17, 16))] = 2
        if i == 2:
            p[p == 2] = 0
        _write(g, gt / f"case_{i:03d}.nii.gz")
        _write(p, pred / f"case_{i:03d}.nii.gz")
    dj = tmp_path / "dataset.json"
    dj.write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1, "lesion": 2},
                              "numTraining": n_cases, "file_ending": ".nii.gz"}))
    pj = tmp_path / "plans.json"
    pj.write_text(json.dumps({"dataset_name": "Dataset999_Tiny", "plans_name": "nnUNetPlans", "configurations": {}}))
    return gt, pred, dj, pj


def test_evaluate_folder_layout_csv_and_empty_conventions(tmp_path):
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics, load_summary_json
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    gt, pred, dj, pj = make_folders(tmp_path)
    res = evaluate_folder(gt, pred, dj, pj, nsd_tolerance_mm=2.0)
    out = pred / "summary_surface.json"
    assert out.is_file() and (pred / "summary_surface.csv").is_file()
    assert set(res) == {"metric_per_case", "mean", "foreground_mean", "scoring"}
    assert res["scoring"] == {"nsd_convention": "voxel", "nsd_tolerance_mm": 2.0,
                              "postprocessing": {"rule": "none", "pkl": None}}
    assert json.loads(out.read_text())["scoring"] == res["scoring"]  # the summary names its rules
    assert len(res["metric_per_case"]) == 3
    # nnU-Net's own per-case metrics are reproduced exactly, HD95/NSD sit next to them
    for c in res["metric_per_case"]:
        stock = compute_metrics(c["reference_file"], c["prediction_file"], SimpleITKIO(), [1, 2])
        for lab in (1, 2):
            for k, v in stock["metrics"][lab].items():
                assert c["metrics"][lab][k] == pytest.approx(v, nan_ok=True), (k, lab)
            assert {"HD95", "NSD"} <= set(c["metrics"][lab])
    per = {os.path.basename(c["prediction_file"]): c["metrics"] for c in res["metric_per_case"]}
    assert per["case_000.nii.gz"][2]["HD95"] == 0.0 and per["case_000.nii.gz"][2]["NSD"] == 1.0
    # shift of 2 slices along z with z spacing 2.5 mm (SimpleITK's 3rd spacing = nnU-Net's axis 0)
    assert per["case_001.nii.gz"][2]["HD95"] == pytest.approx(2 * SITK_SPACING[2], rel=1e-6)
    assert per["case_001.nii.gz"][1]["HD95"] == 0.0
    # label 2 missed in case 2: worst case, HD95 = the image diagonal (12 x 20 x 18 voxels at 2.5 x 0.9 x 0.8 mm)
    diagonal = math.sqrt((12 * 2.5) ** 2 + (20 * 0.9) ** 2 + (18 * 0.8) ** 2)
    assert per["case_002.nii.gz"][2]["HD95"] == pytest.approx(diagonal) and per["case_002.nii.gz"][2]["NSD"] == 0.0
    assert per["case_002.nii.gz"][2]["Dice"] == 0.0  # nnU-Net's own Dice: already the worst case
    # means: the miss is in every mean at its worst value and counted
    m2 = res["mean"][2]
    assert m2["n_one_empty"] == 1 and res["mean"][1]["n_one_empty"] == 0 and m2["n_both_empty"] == 0
    assert m2["HD95"] == pytest.approx((0.0 + 5.0 + diagonal) / 3)
    assert m2["NSD"] == pytest.approx(np.mean([per[f"case_00{i}.nii.gz"][2]["NSD"] for i in range(3)]))
    assert res["foreground_mean"]["n_one_empty"] == 1
    assert res["foreground_mean"]["HD95"] == pytest.approx((res["mean"][1]["HD95"] + m2["HD95"]) / 2)
    assert res["foreground_mean"]["Dice"] == pytest.approx((res["mean"][1]["Dice"] + m2["Dice"]) / 2)
    # the JSON is nnU-Net's format (its own loader reads it back)
    loaded = load_summary_json(str(out))
    assert loaded["mean"][2]["n_one_empty"] == 1 and 1 in loaded["mean"]
    # CSV: one row per case and class
    rows = list(csv.DictReader(open(pred / "summary_surface.csv")))
    assert len(rows) == 6 and {"case", "class", "Dice", "HD95", "NSD"} <= set(rows[0])
    row = next(r for r in rows if r["case"] == "case_002" and r["class"] == "2")
    assert float(row["HD95"]) == pytest.approx(diagonal) and float(row["NSD"]) == 0.0


def test_compute_metrics_on_folder_with_surface_csv_path_and_regions(tmp_path):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    gt, pred, _, _ = make_folders(tmp_path)
    out = tmp_path / "res" / "s.json"
    res = compute_metrics_on_folder_with_surface(gt, pred, str(out), SimpleITKIO(), ".nii.gz", [(1, 2), (2,)],
                                                 csv_file=str(tmp_path / "x.csv"))
    assert out.is_file() and (tmp_path / "x.csv").is_file() and not (tmp_path / "res" / "s.csv").exists()
    assert set(res["mean"]) == {(1, 2), (2,)}
    assert res["mean"][(2,)]["n_one_empty"] == 1 and res["mean"][(1, 2)]["n_one_empty"] == 0


def test_missing_prediction_and_label_mismatch_raise_and_write_nothing(tmp_path):
    from nnunet_ext.cli import UserError

    gt, pred, dj, pj = make_folders(tmp_path)
    os.remove(pred / "case_001.nii.gz")
    with pytest.raises(UserError, match="case_001"):
        evaluate_folder(gt, pred, dj, pj, chill=False)
    assert not (pred / "summary_surface.json").exists()
    res = evaluate_folder(gt, pred, dj, pj, chill=True)
    assert len(res["metric_per_case"]) == 2
    os.remove(pred / "summary_surface.json")
    os.remove(pred / "summary_surface.csv")
    bad = np.zeros((12, 20, 18), np.uint8)
    bad[2:4, 2:4, 2:4] = 7
    _write(bad, pred / "case_002.nii.gz")
    with pytest.raises(UserError, match=r"case_002.*\[7\]"):
        evaluate_folder(gt, pred, dj, pj, chill=True)
    assert not list(pred.glob("summary_surface*"))


# ------------------------------------------------------------------------------------------------ CLI
def _cli(args):
    from nnunet_ext.cli import main

    return main([str(a) for a in args])


def test_cli_evaluate_ok(tmp_path, capsys):
    gt, pred, dj, pj = make_folders(tmp_path)
    out = tmp_path / "o" / "summary.json"
    assert _cli(["evaluate", gt, pred, "-djfile", dj, "-pfile", pj, "-o", out, "--nsd-tolerance-mm", "1"]) == 0
    assert out.is_file() and (tmp_path / "o" / "summary.csv").is_file()
    data = json.loads(out.read_text())
    assert data["mean"]["2"]["n_one_empty"] == 1 and "NSD" in data["foreground_mean"]
    out = capsys.readouterr().out
    assert "HD95" in out and "(1 worst)" in out


@pytest.mark.parametrize("case", ["no_gt", "no_pred_folder", "no_dataset_json", "no_plans", "missing_pred",
                                  "label_mismatch", "bad_json"])
def test_cli_evaluate_bad_input_exit_2_one_line_no_output(tmp_path, capsys, case):
    gt, pred, dj, pj = make_folders(tmp_path)
    args = [gt, pred, "-djfile", dj, "-pfile", pj]
    culprit = None
    if case == "no_gt":
        args[0] = culprit = tmp_path / "nope"
    elif case == "no_pred_folder":
        args[1] = culprit = tmp_path / "nope"
    elif case == "no_dataset_json":
        args[3] = culprit = tmp_path / "missing.json"
    elif case == "no_plans":
        args[5] = culprit = tmp_path / "missing_plans.json"
    elif case == "missing_pred":
        os.remove(pred / "case_002.nii.gz")
        culprit = "case_002"
    elif case == "label_mismatch":
        p = np.zeros((12, 20, 18), np.uint8)
        p[1:3, 1:3, 1:3] = 4
        _write(p, pred / "case_001.nii.gz")
        culprit = pred / "case_001.nii.gz"
    elif case == "bad_json":
        dj.write_text("{not json")
        culprit = dj
    out = tmp_path / "out.json"
    assert _cli(["evaluate", *args, "-o", out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(culprit) in err and err.startswith("nnunet-ext evaluate: error:")
    assert not out.exists() and not (tmp_path / "out.csv").exists()
    assert not list(pred.glob("summary*")) if pred.is_dir() else True
    if case == "missing_pred":  # --chill evaluates the present cases
        assert _cli(["evaluate", *args, "-o", out, "--chill"]) == 0 and out.is_file()


# ------------------------------------------------------------------------------------------------ trained model folds
def make_model_folder(tmp_path, monkeypatch):
    gt, pred, dj, pj = make_folders(tmp_path)
    pre = tmp_path / "preprocessed" / "Dataset999_Tiny"
    pre.mkdir(parents=True)
    os.rename(gt, pre / "gt_segmentations")
    (pre / "splits_final.json").write_text(json.dumps([
        {"train": ["case_002"], "val": ["case_000", "case_001"]},
        {"train": ["case_000", "case_001"], "val": ["case_002"]}]))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    model = tmp_path / "results" / "Dataset999_Tiny" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    val = model / "fold_0" / "validation"
    val.mkdir(parents=True)
    for c in ("case_000", "case_001"):
        os.rename(pred / f"{c}.nii.gz", val / f"{c}.nii.gz")
    (model / "dataset.json").write_text(dj.read_text())
    (model / "plans.json").write_text(pj.read_text())
    return model


def test_evaluate_trained_model_folds_reports_missing_fold(tmp_path, monkeypatch):
    model = make_model_folder(tmp_path, monkeypatch)
    with pytest.warns(UserWarning, match=r"fold\(s\) \[1\]"):
        res = evaluate_trained_model_folds(model)
    assert isinstance(res, FoldResults) and list(res) == [0] and list(res.missing) == [1]
    assert (model / "fold_0" / "validation" / "summary_surface.json").is_file()
    assert (model / "fold_0" / "validation" / "summary_surface.csv").is_file()
    assert res[0]["mean"][2]["HD95"] == pytest.approx((0.0 + 5.0) / 2)
    assert len(res[0]["metric_per_case"]) == 2


def test_cli_folds_of(tmp_path, monkeypatch, capsys):
    model = make_model_folder(tmp_path, monkeypatch)
    assert _cli(["evaluate", "--folds-of", model]) == 0
    out = capsys.readouterr().out
    assert "fold 0" in out and "[1]" in out  # the missing fold is reported
    empty = tmp_path / "results" / "Dataset999_Tiny" / "Other__nnUNetPlans__3d_fullres"
    empty.mkdir()
    (empty / "plans.json").write_text((model / "plans.json").read_text())
    (empty / "dataset.json").write_text((model / "dataset.json").read_text())
    assert _cli(["evaluate", "--folds-of", empty]) == 2
    assert str(empty) in capsys.readouterr().err


@pytest.mark.slow
def test_parallel_equals_serial(tmp_path):
    gt, pred, dj, pj = make_folders(tmp_path)
    a = evaluate_folder(gt, pred, dj, pj, output_file=tmp_path / "a.json", num_processes=1)
    b = evaluate_folder(gt, pred, dj, pj, output_file=tmp_path / "b.json", num_processes=2)
    for ca, cb in zip(a["metric_per_case"], b["metric_per_case"]):
        for lab in (1, 2):
            for k, v in ca["metrics"][lab].items():
                assert cb["metrics"][lab][k] == pytest.approx(v, nan_ok=True)


def test_never_predicted_class_has_worst_hd95_and_both_empty_excluded(tmp_path):
    """The issue-14 headline: a model that never predicts label 2 gets Dice 0, NSD 0 and HD95 = the worst value in
    every mean, never a perfect HD95; cases without label 2 in either mask are excluded from all three means and
    counted; a class with nothing defined shows n/a (demo table, evaluate's summary)."""
    from nnunet_ext.data.demo import format_table

    gt, pred, dj, pj = make_folders(tmp_path, n_cases=4)
    for i in range(4):
        import SimpleITK as sitk

        p = sitk.GetArrayFromImage(sitk.ReadImage(str(pred / f"case_{i:03d}.nii.gz")))
        p[p == 2] = 0
        _write(p, pred / f"case_{i:03d}.nii.gz")
        if i == 3:  # no lesion in the reference either: both empty
            _write(p, gt / f"case_{i:03d}.nii.gz")
    res = evaluate_folder(gt, pred, dj, pj)
    m2 = res["mean"][2]
    diagonal = math.sqrt((12 * 2.5) ** 2 + (20 * 0.9) ** 2 + (18 * 0.8) ** 2)
    assert m2["n_one_empty"] == 3 and m2["n_both_empty"] == 1
    assert m2["Dice"] == 0.0 and m2["NSD"] == 0.0 and m2["HD95"] == pytest.approx(diagonal)
    case3 = next(c for c in res["metric_per_case"] if c["prediction_file"].endswith("case_003.nii.gz"))
    assert all(math.isnan(case3["metrics"][2][k]) for k in METRICS)
    assert res["mean"][1]["HD95"] == 0.0 and res["mean"][1]["n_one_empty"] == 0
    rows = [dict(trainer="never_lesion", params=1e6, train_s=1.0, predict_s=1.0,
                 metrics={str(k): v for k, v in res["mean"].items()}),
            dict(trainer="nothing_defined", params=1e6, train_s=1.0, predict_s=1.0,
                 metrics={"1": res["mean"][1], "2": {**m2, "Dice": float("nan"), "HD95": float("nan"),
                                                      "NSD": float("nan"), "n_one_empty": 0}})]
    table = format_table(rows, {"background": 0, "organ": 1, "lesion": 2})
    line = next(r for r in table.splitlines() if r.startswith("| never_lesion"))
    assert f"{diagonal:.2f} (3 worst)" in line and "0.000 (3 worst)" in line
    assert "| n/a |" in next(r for r in table.splitlines() if r.startswith("| nothing_defined"))


# ------------------------------------------------------------------------------------------------ NSD conventions
def _mask2d(shape, pixels):
    m = np.zeros(shape, bool)
    for p in pixels:
        m[p] = True
    return m


@pytest.mark.parametrize("ref,pred,spacing,tol,surfel,voxel", [
    # one pixel vs one pixel 3 px away (1 mm): the four corner elements of each pixel are equal diagonals; the two
    # facing corners of each are 2 mm apart (within 2 mm), the far two 3 mm: surfel 0.5; voxel centres 3 mm: 0
    (_mask2d((5, 8), [(2, 2)]), _mask2d((5, 8), [(2, 5)]), (1.0, 1.0), 2.0, 0.5, 0.0),
    # tolerance 3 mm: every element and every voxel within
    (_mask2d((5, 8), [(2, 2)]), _mask2d((5, 8), [(2, 5)]), (1.0, 1.0), 3.0, 1.0, 1.0),
    # a 1x3 bar vs its first pixel, 1 mm: the bar's 8 corner elements are 4 diagonals (sqrt(0.5) mm, the ends) and
    # 4 straight edges (1 mm, the middle corners); within 1 mm of the pixel's corners: the 2 diagonals at its end and
    # all 4 straight edges; the pixel's 4 diagonals are on the bar's corners. NSD = (2 r + 4 + 4 r) / (4 r + 4 + 4 r)
    # with r = sqrt(0.5); by counting voxels: (2 + 1) / (3 + 1)
    (_mask2d((5, 8), [(2, 0), (2, 1), (2, 2)]), _mask2d((5, 8), [(2, 0)]), (1.0, 1.0), 1.0,
     (4 + 6 * math.sqrt(0.5)) / (4 + 8 * math.sqrt(0.5)), 0.75),
])
def test_nsd_surfel_convention_on_cases_worked_out_by_hand(ref, pred, spacing, tol, surfel, voxel):
    assert surface_metrics(ref, pred, spacing, tol, nsd_convention="surfel")["NSD"] == pytest.approx(surfel, abs=1e-6)
    assert surface_metrics(ref, pred, spacing, tol, nsd_convention="voxel")["NSD"] == pytest.approx(voxel, abs=1e-9)
    assert surface_metrics(ref, pred, spacing, tol)["NSD"] == pytest.approx(voxel, abs=1e-9)  # default: voxel


def test_nsd_surfel_3d_by_hand_and_against_monai_and_border():
    import torch
    from monai.metrics import compute_surface_dice

    # one voxel vs the next along z at 3 mm: the shared face's 4 corner elements at 0 mm, the other 4 at 3 mm
    # (all 8 corner elements of a voxel have the same area): 0.5 at 1 mm; the voxel centres are 3 mm apart: 0
    a, b = np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
    a[1, 1, 1], b[2, 1, 1] = True, True
    assert surface_metrics(a, b, (3.0, 1.0, 1.0), 1.0, nsd_convention="surfel")["NSD"] == pytest.approx(0.5)
    assert surface_metrics(a, b, (3.0, 1.0, 1.0), 1.0)["NSD"] == 0.0
    # anisotropic boxes: MONAI's own compute_surface_dice(use_subvoxels=True), which pads the masks itself
    spacing = (2.5, 0.8, 0.9)
    ref, pred = np.zeros((20, 30, 30), bool), np.zeros((20, 30, 30), bool)
    ref[5:15, 5:20, 8:22], pred[6:15, 4:19, 8:24] = True, True
    onehot = lambda m: torch.from_numpy(np.stack([~m, m])[None].astype(np.float32))  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = float(compute_surface_dice(onehot(pred), onehot(ref), [1.0], spacing=spacing, use_subvoxels=True))
    got = surface_metrics(ref, pred, spacing, 1.0, nsd_convention="surfel")["NSD"]
    assert got == pytest.approx(expected, abs=1e-6) and got != surface_metrics(ref, pred, spacing, 1.0)["NSD"]
    # masks touching the image border keep their border faces (zero padding): moving both masks to the border
    # does not change the value
    assert surface_metrics(ref[5:15], pred[5:15], spacing, 1.0, nsd_convention="surfel")["NSD"] == \
        pytest.approx(surface_metrics(ref[4:16], pred[4:16], spacing, 1.0, nsd_convention="surfel")["NSD"])
    with pytest.raises(ValueError, match="unknown NSD convention"):
        surface_metrics(ref, pred, spacing, 1.0, nsd_convention="area")


def test_evaluate_surfel_summary_names_convention_and_tolerance(tmp_path, capsys):
    from nnunet_ext.cli import main

    gt, pred, dj, pj = make_folders(tmp_path)
    assert main(["evaluate", str(gt), str(pred), "-djfile", str(dj), "-pfile", str(pj), "--nsd-convention", "surfel",
                 "--nsd-tolerance-mm", "1.5"]) == 0
    assert "NSD: surfel convention, tolerance 1.5 mm" in capsys.readouterr().out
    s = json.loads((pred / "summary_surface.json").read_text())
    assert s["scoring"]["nsd_convention"] == "surfel" and s["scoring"]["nsd_tolerance_mm"] == 1.5
    # case 1: label 2 shifted by 2 slices (5 mm) along z, beyond 1.5 mm: only the shared sides count
    nsd = s["metric_per_case"][1]["metrics"]["2"]["NSD"]
    assert 0 < nsd < 1 and s["metric_per_case"][0]["metrics"]["2"]["NSD"] == 1.0
