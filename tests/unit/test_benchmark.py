"""``nnunet-ext benchmark``: model figures on tiny explicit patches, FLOPs convention, Wilcoxon numbers, the accuracy
part on fabricated nnU-Net-layout folders, and one-line errors for bad input (nothing written into --out)."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_ext.benchmark import cli as B
from nnunet_ext.cli import main

STOCK = "nnUNetTrainer"
OURS = "nnUNetTrainerPlainUNet"


# ------------------------------------------------------------------------------------------------ FLOPs convention
@pytest.mark.parametrize("conv,in_shape,kw", [
    (torch.nn.Conv2d, (1, 3, 17, 12), dict(kernel_size=3, padding=1)),
    (torch.nn.Conv2d, (2, 4, 16, 16), dict(kernel_size=(3, 1), stride=2)),
    (torch.nn.Conv3d, (1, 2, 8, 10, 12), dict(kernel_size=3, padding=1)),
    (torch.nn.Conv3d, (1, 4, 6, 9, 7), dict(kernel_size=(1, 3, 3), stride=(1, 2, 2), bias=False)),
])
def test_conv_flops_equal_analytic_count(conv, in_shape, kw):
    """torch's FlopCounterMode on the meta device: 2 * C_in * C_out * prod(k) * output voxels (batch included);
    a multiply-add counts as 2 FLOPs, the bias is not counted."""
    c_in, c_out = in_shape[1], 5
    with torch.device("meta"):
        m = conv(c_in, c_out, **kw)
    out = m(torch.zeros(in_shape, device="meta"))
    k = kw["kernel_size"]
    k = (k,) * (len(in_shape) - 2) if isinstance(k, int) else k
    analytic = 2 * c_in * c_out * int(np.prod(k)) * int(np.prod(out.shape[2:])) * in_shape[0]
    assert B.forward_flops(m, in_shape, "meta") == analytic
    # the same count on real tensors (the meta device does not change it)
    m_cpu = conv(c_in, c_out, **kw)
    assert B.forward_flops(m_cpu, in_shape, "cpu") == analytic


# ------------------------------------------------------------------------------------------------ model figures
def _direct_param_count(trainer, patch, batch):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans, dj, cfg = B.explicit_plans(patch, batch)
    pm = PlansManager(plans)
    cm = pm.get_configuration(cfg)
    net = B.find_trainer_class(trainer).build_network_architecture(pm, cm, 1, 3, True)
    return sum(p.numel() for p in net.parameters() if p.requires_grad), net, plans, dj, cfg


@pytest.mark.parametrize("patch,batch,volume,isolate", [
    ((32, 32), 2, (3, 40, 36), True),          # 2d: a fresh subprocess per trainer (the CLI's path)
    ((16, 32, 32), 1, (16, 40, 32), False),    # 3d: in process
])
def test_model_figures_tiny_patch(patch, batch, volume, isolate):
    plans, dj, cfg = B.explicit_plans(patch, batch)
    res = B.run_model_figures([STOCK, OURS], plans, dj, cfg, device="cpu", warmup=1, repeats=2,
                              volume_shape=list(volume), mirroring=False, isolate=isolate, log=lambda *a: None)
    by = {r["trainer"]: r for r in res}
    assert set(by) == {STOCK, OURS}
    for name, r in by.items():
        assert "error" not in r, r.get("traceback", r.get("error"))
        assert r["patch_size"] == list(patch) and r["batch_size"] == batch
        assert r["params"] > 0 and r["flops"] > 0 and r["train_ms"] > 0 and r["infer_s"] > 0
        assert len(r["train_ms_all"]) == 2 and all(t > 0 for t in r["train_ms_all"])
        assert r["step"] == "trainer.train_step", r["notes"]
        n, net, *_ = _direct_param_count(name, patch, batch)
        assert r["params"] == n
        if isolate:  # a fresh process: the peak RSS rise is this model's
            assert r["peak_mib"] > 0
    # our plain U-Net must be stock nnU-Net's network
    assert by[OURS]["params"] == by[STOCK]["params"] and by[OURS]["flops"] == by[STOCK]["flops"]


def test_network_flops_meta_equal_cpu():
    """FLOPs of a whole (stock) network: the meta-device count equals a real forward on the CPU, and is at least the
    analytic count of its first convolution."""
    n, net, plans, dj, cfg = _direct_param_count(STOCK, (32, 32), 1)
    net.decoder.deep_supervision = False
    net.eval()
    cpu = B.forward_flops(net, (1, 1, 32, 32), "cpu")
    meta = B.forward_flops(net.to("meta"), (1, 1, 32, 32), "meta")
    first = 2 * 1 * 32 * 9 * 32 * 32
    assert cpu == meta > first


def test_explicit_plans_topology():
    plans, dj, cfg = B.explicit_plans((40, 224, 224), 2, spacing=(2.5, 0.8, 0.8))
    a = plans["configurations"][cfg]["architecture"]["arch_kwargs"]
    assert cfg == "3d_fullres" and a["n_stages"] == 6 and a["strides"][1] == [1, 2, 2]
    assert a["features_per_stage"] == [32, 64, 128, 256, 320, 320]
    with pytest.raises(ValueError, match="not divisible"):
        B.explicit_plans((30, 30), 2)


# ------------------------------------------------------------------------------------------------ Wilcoxon
def test_wilcoxon_equals_scipy():
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(3)
    a = rng.normal(0.8, 0.05, 23)
    b = a + rng.normal(0.01, 0.02, 23)
    a[[2, 7]] = np.nan
    b[11] = np.nan
    keep = ~(np.isnan(a) | np.isnan(b))
    stat, p, n = B.wilcoxon_paired(a, b)
    ref = wilcoxon(a[keep], b[keep])
    assert n == keep.sum() == 20
    assert stat == ref.statistic and p == ref.pvalue
    # undefined cases: no pairs / identical
    assert math.isnan(B.wilcoxon_paired([np.nan], [1.0])[1])
    assert math.isnan(B.wilcoxon_paired([1.0, 2.0], [1.0, 2.0])[1])


def _summary(cases):
    """nnU-Net-layout summary from {case: {class: (dice, hd95, nsd)}}."""
    return {"metric_per_case": [
        {"reference_file": f"/gt/{c}.nii.gz", "prediction_file": f"/pred/{c}.nii.gz",
         "metrics": {k: {"Dice": v[0], "IoU": v[0] / (2 - v[0]), "HD95": v[1], "NSD": v[2]}
                     for k, v in per.items()}} for c, per in cases.items()], "mean": {}, "foreground_mean": {}}


def test_accuracy_stats_pairing_and_nan():
    """Pairs by case id (order and missing cases do not matter), NaN HD95 excluded from means and pairs, counted."""
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(0)
    ids = [f"case_{i:03d}" for i in range(12)]
    ref = {c: {"1": (rng.uniform(.7, .9), rng.uniform(1, 9), rng.uniform(.6, 1)),
               "2": (rng.uniform(.2, .6), rng.uniform(3, 30), rng.uniform(.2, .8))} for c in ids}
    oth = {c: {"1": (rng.uniform(.7, .9), rng.uniform(1, 9), rng.uniform(.6, 1)),
               "2": (rng.uniform(.2, .6), float("nan") if c == "case_004" else rng.uniform(3, 30),
                     rng.uniform(.2, .8))} for c in reversed(ids[1:])}  # case_000 missing, other order
    per_case = {"ref": B.per_case_table([_summary(ref)]), "other": B.per_case_table([_summary(oth)])}
    st = B.accuracy_stats(per_case, "ref")
    assert "p" not in st["ref"]["1"]["Dice"]
    d = st["other"]["2"]["HD95"]
    assert d["n_nan"] == 1 and d["n"] == 10 and d["n_common"] == 11 and d["n_pairs"] == 10
    common = [c for c in ids[1:] if c != "case_004"]
    assert d["p"] == wilcoxon([oth[c]["2"][1] for c in common], [ref[c]["2"][1] for c in common]).pvalue
    vals = [oth[c]["2"][1] for c in common]
    assert d["mean"] == pytest.approx(np.mean(vals)) and d["std"] == pytest.approx(np.std(vals, ddof=1))
    assert st["other"]["1"]["Dice"]["p"] == wilcoxon([oth[c]["1"][0] for c in ids[1:]],
                                                     [ref[c]["1"][0] for c in ids[1:]]).pvalue


def test_accuracy_stats_count_one_empty_cases_at_worst_value():
    """Metrics Reloaded conventions (nnunet_ext.evaluation.table): a case with exactly one empty mask (from nnU-Net's
    n_ref / n_pred) stays in the mean at its (worst) value and is counted; a both-empty case (NaN) is excluded."""
    def entry(c, dice, hd, nsd, n_ref, n_pred):
        return {"reference_file": f"/gt/{c}.nii.gz", "prediction_file": f"/p/{c}.nii.gz",
                "metrics": {"2": {"Dice": dice, "HD95": hd, "NSD": nsd, "n_ref": n_ref, "n_pred": n_pred}}}
    summary = {"metric_per_case": [entry("a", 0.8, 3.0, 0.9, 10, 12), entry("b", 0.0, 250.0, 0.0, 10, 0),
                                   entry("c", float("nan"), float("nan"), float("nan"), 0, 0)]}
    st = B.accuracy_stats({"x": B.per_case_table([summary])}, None)["x"]["2"]
    assert st["HD95"]["mean"] == pytest.approx((3.0 + 250.0) / 2) and st["HD95"]["n_one_empty"] == 1
    assert st["Dice"]["n"] == 2 and st["Dice"]["n_nan"] == 1 and st["NSD"]["mean"] == pytest.approx(0.45)
    header, rows, _ = B.build_rows(["x"], {}, {"x": {"2": st}}, {"x": []}, None, {"2": "tumour"})
    assert "(1 worst)" in rows[0][header.index("tumour HD95 (mm)")]


def test_planner_imports_no_benchmark_module():
    import subprocess
    import sys

    code = ("import sys\nfrom nnunet_ext.plans import planner\nplanner.reference_arch_kwargs(2)\n"
            "print(sorted(m for m in sys.modules if m.startswith('nnunet_ext.bench')))")  # the plans synthesiser is plans.synth
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------------------------------------ accuracy end to end
def _write_seg(path: Path, arr: np.ndarray, spacing=(1.0, 1.0, 2.0)):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))


def _ball(shape, center, r):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (z - center[0]) ** 2 + (y - center[1]) ** 2 + (x - center[2]) ** 2 <= r ** 2


def _case(rng, shape=(12, 20, 20)):
    seg = np.zeros(shape, np.uint8)
    c = rng.integers(6, 10, 3)
    seg[_ball(shape, c, 4.5)] = 1
    seg[_ball(shape, c + rng.integers(-1, 2, 3), 2.0)] = 2
    return seg


def _perturb(seg, rng, shift):
    out = np.roll(seg, shift=tuple(rng.integers(-shift, shift + 1, 3)), axis=(0, 1, 2))
    return out


@pytest.fixture()
def fake_nnunet(tmp_path, monkeypatch):
    """A trained-model layout: gt_segmentations, splits, two trainers with fold_X/validation predictions
    (stock: 5 folds; ours: fold 4 missing)."""
    raw, pre, res = tmp_path / "raw", tmp_path / "pre", tmp_path / "res"
    name = "Dataset987_BenchTest"
    plans, dj, _ = B.explicit_plans((16, 16, 16), 2)
    plans["dataset_name"] = name
    rng = np.random.default_rng(1)
    ids = [f"bt_{i:03d}" for i in range(10)]
    gt = {c: _case(rng) for c in ids}
    (pre / name).mkdir(parents=True)
    (raw / name).mkdir(parents=True)
    for c, s in gt.items():
        _write_seg(pre / name / "gt_segmentations" / f"{c}.nii.gz", s)
    splits = [{"train": [c for c in ids if c not in ids[2 * f: 2 * f + 2]], "val": ids[2 * f: 2 * f + 2]}
              for f in range(5)]
    for d in (pre / name,):
        (d / "plans.json").write_text(json.dumps(plans))
        (d / "nnUNetPlans.json").write_text(json.dumps(plans))
        (d / "dataset.json").write_text(json.dumps(dj))
        (d / "splits_final.json").write_text(json.dumps(splits))
    for tr, shift, folds in ((STOCK, 1, range(5)), (OURS, 2, range(4))):
        mf = res / name / f"{tr}__nnUNetPlans__3d_fullres"
        mf.mkdir(parents=True)
        (mf / "plans.json").write_text(json.dumps(plans))
        (mf / "dataset.json").write_text(json.dumps(dj))
        for f in folds:
            for c in splits[f]["val"]:
                _write_seg(mf / f"fold_{f}" / "validation" / f"{c}.nii.gz", _perturb(gt[c], rng, shift))
    for k, v in (("nnUNet_raw", raw), ("nnUNet_preprocessed", pre), ("nnUNet_results", res)):
        monkeypatch.setenv(k, str(v))
    return dict(name=name, ids=ids, gt=gt, pre=pre, res=res, plans=plans, dj=dj)


def _read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _check_p_against_per_case(out: Path, trainer: str, reference: str, cls: str, metric: str):
    from scipy.stats import wilcoxon

    rows = _read_csv(out / "per_case.csv")
    val = {(r["trainer"], r["case"]): float(r[metric]) for r in rows if r["class"] == cls}
    common = sorted(c for (t, c) in val if t == trainer and (reference, c) in val)
    a = np.array([val[(trainer, c)] for c in common])
    b = np.array([val[(reference, c)] for c in common])
    keep = ~(np.isnan(a) | np.isnan(b))
    summary = {r["trainer"]: r for r in _read_csv(out / "benchmark.csv")}
    p = float(summary[trainer][f"{cls}_{metric}_p"])
    assert p == pytest.approx(wilcoxon(a[keep], b[keep]).pvalue, rel=1e-12)
    assert int(summary[trainer][f"{cls}_{metric}_n_pairs"]) == keep.sum()


def test_accuracy_cv_reports_missing_folds(fake_nnunet, tmp_path, capsys):
    out = tmp_path / "out_cv"
    rc = main(["benchmark", "-d", "987", "-c", "3d_fullres", "--skip-models", "--cv", "-tr", OURS, STOCK,
               "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "MISSING folds [4]" in text
    for f in ("benchmark.md", "benchmark.csv", "per_case.csv", "boxplot_dice.png", "boxplot_hd95.png",
              "benchmark.json"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert (out / "boxplot_dice.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "benchmark.md").read_text()
    assert "pancreas Dice" in md and "tumour HD95 (mm)" in md and f"{STOCK} (ref)" in md
    summary = {r["trainer"]: r for r in _read_csv(out / "benchmark.csv")}
    assert summary[OURS]["missing_folds"] == "4" and summary[STOCK]["missing_folds"] == ""
    assert int(summary[OURS]["pancreas_Dice_n"]) == 8 and int(summary[STOCK]["pancreas_Dice_n"]) == 10
    for cls in ("pancreas", "tumour"):
        for m in ("Dice", "HD95", "NSD"):
            _check_p_against_per_case(out, OURS, STOCK, cls, m)
    # the stock predictions are closer to the ground truth (shift 1 vs 2): higher mean Dice
    assert float(summary[STOCK]["pancreas_Dice_mean"]) > float(summary[OURS]["pancreas_Dice_mean"])
    # per-fold means: each fold's validation cases (splits_final.json), from per_case.csv
    splits = json.loads((fake_nnunet["pre"] / fake_nnunet["name"] / "splits_final.json").read_text())
    rows = _read_csv(out / "per_case.csv")
    for f in range(4):
        v = [float(r["Dice"]) for r in rows if r["trainer"] == OURS and r["class"] == "pancreas"
             and r["case"] in splits[f]["val"]]
        assert float(summary[OURS][f"pancreas_Dice_fold{f}_mean"]) == pytest.approx(np.mean(v))
    assert "pancreas_Dice_fold4_mean" not in summary[OURS] or summary[OURS]["pancreas_Dice_fold4_mean"] == ""
    assert "Per-fold means" in md and "| fold 0 |" in md
    # the paired bootstrap CI of the mean difference brackets it, on the Wilcoxon's pairs
    lo, d, hi = (float(summary[OURS][f"pancreas_Dice_{k}"]) for k in ("ci_low", "mean_diff", "ci_high"))
    assert lo <= d <= hi and d < 0
    assert "post-processing **none**" in md and "NSD **voxel** convention, tolerance 2.0 mm" in md


def test_paired_bootstrap_is_reproducible_and_paired():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(3)
    a = rng.normal(0.8, 0.1, 12)
    b = a - 0.02 + rng.normal(0, 0.005, 12)  # a small shift, much smaller than the spread between cases
    d, lo, hi = B.bootstrap_mean_difference(a, b)
    assert (d, lo, hi) == B.bootstrap_mean_difference(a, b)  # fixed seed: the same table twice
    assert d == pytest.approx(np.mean(a - b)) and 0 < lo < d < hi
    # an unpaired bootstrap of the same samples cannot tell the shift from the case variance
    unpaired = bootstrap((a, b), lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                         paired=False, vectorized=True, rng=np.random.default_rng(0)).confidence_interval
    assert unpaired.low < 0 < unpaired.high
    assert B.bootstrap_mean_difference([1.0, np.nan, 2.0], [0.5, 1.0, 1.5]) == (0.5, 0.5, 0.5)  # NaN pair dropped


def test_every_row_failed_exits_nonzero(fake_nnunet, tmp_path, capsys):
    rc = main(["benchmark", "-d", "987", "-c", "3d_fullres", "--skip-models", "--cv", "-tr", OURS, "--folds", "4",
               "--reference", OURS, "--out", str(tmp_path / "o")])
    assert rc != 0 and "every row failed" in capsys.readouterr().err


def _blob_folders(ds, tmp_path, n=4):
    """labels/ and two prediction folders of n cases: clean (= the reference) and blobs (+ a distant
    component of 32 voxels of label 1 in a corner: more than 5 % of the surface, so HD95 sees it)."""
    labels, clean, blobs = tmp_path / "labels", tmp_path / "clean", tmp_path / "blobs"
    for c in ds["ids"][:n]:
        s = ds["gt"][c]
        _write_seg(labels / f"{c}.nii.gz", s)
        _write_seg(clean / f"{c}.nii.gz", s)
        b = s.copy()
        b[0:2, 16:20, 16:20] = 1
        _write_seg(blobs / f"{c}.nii.gz", b)
    return labels, clean, blobs


@pytest.mark.parametrize("rule", ["none", "largest", "nnunet"])
def test_one_postprocessing_rule_for_every_row(fake_nnunet, tmp_path, capsys, rule):
    import hashlib

    from batchgenerators.utilities.file_and_folder_operations import save_pickle
    from nnunetv2.postprocessing.remove_connected_components import remove_all_but_largest_component_from_segmentation

    ds = fake_nnunet
    labels, clean, blobs = _blob_folders(ds, tmp_path)
    if rule == "nnunet":  # each row's own pkl, as nnUNetv2_determine_postprocessing writes it
        save_pickle(([], []), str(clean / "postprocessing.pkl"))
        save_pickle(([remove_all_but_largest_component_from_segmentation], [{"labels_or_regions": [1]}]),
                    str(blobs / "postprocessing.pkl"))
    digest = lambda: {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in blobs.glob("*.nii.gz")}  # noqa: E731
    before = digest()
    out = tmp_path / "out"
    rc = main(["benchmark", "--skip-models", "--pred", f"clean={clean}", f"blobs={blobs}", "--reference", "clean",
               "--labels", str(labels), "-djfile", str(ds["pre"] / ds["name"] / "dataset.json"),
               "-pfile", str(ds["pre"] / ds["name"] / "plans.json"), "--postprocessing", rule, "--out", str(out)])
    assert rc == 0
    assert f"scoring: post-processing {rule}; NSD voxel convention" in capsys.readouterr().out
    assert digest() == before  # the rule applies at scoring: prediction files unchanged
    assert f"post-processing **{rule}**" in (out / "benchmark.md").read_text()
    meta = json.loads((out / "benchmark.json").read_text())["meta"]
    assert meta["postprocessing"] == rule
    assert bool(meta["postprocessing_files"]) == (rule == "nnunet")
    summary = {r["trainer"]: r for r in _read_csv(out / "benchmark.csv")}
    hd_blobs, hd_clean = (float(summary[k]["pancreas_HD95_mean"]) for k in ("blobs", "clean"))
    assert hd_clean == 0.0
    if rule == "none":  # the distant component is scored: HD95 far from 0
        assert hd_blobs > 10 and float(summary["blobs"]["pancreas_Dice_mean"]) < 1
    else:  # removed before scoring: the same as the reference
        assert hd_blobs == 0.0 and float(summary["blobs"]["pancreas_Dice_mean"]) == 1.0


def test_crossval_c2f_summary_per_rule_is_the_one_benchmark_scores(fake_nnunet, tmp_path, capsys):
    """crossval-c2f keeps summary.json for --postprocessing none (nnUNetv2_determine_postprocessing's unfiltered
    baseline) and writes another rule's scoring under benchmark's name for it; ``benchmark --cv NAME=FOLDER`` under
    that rule scores the same predictions into the same file with the same numbers."""
    from nnunet_ext.c2f.crossval import score_fold, summary_name
    from nnunet_ext.evaluation.postprocessing import postprocessing_for
    from nnunet_ext.evaluation.summary import fold_summary_name

    ds = fake_nnunet
    folder = tmp_path / "C2F__pair"
    folder.mkdir()
    (folder / "plans.json").write_text(json.dumps(ds["plans"]))
    (folder / "dataset.json").write_text(json.dumps(ds["dj"]))
    val_dir = folder / "fold_0" / "validation"
    for c in ds["ids"][:2]:  # fold 0's validation cases, each with a distant false-positive component
        seg = ds["gt"][c].copy()
        seg[0:2, 16:20, 16:20] = 1
        _write_seg(val_dir / f"{c}.nii.gz", seg)
    gt = ds["pre"] / ds["name"] / "gt_segmentations"
    none, largest = postprocessing_for("none"), postprocessing_for("largest")
    assert summary_name(none) == "summary.json" and summary_name(largest) == fold_summary_name(largest) == \
        "summary_surface_pp_largest.json"
    s_none = score_fold(gt, val_dir, folder, none, 2.0, "voxel")
    baseline = (val_dir / "summary.json").read_text()
    s_largest = score_fold(gt, val_dir, folder, largest, 2.0, "voxel")
    assert (val_dir / "summary.json").read_text() == baseline  # the unfiltered baseline is not overwritten
    assert s_none["mean"][1]["Dice"] < 1.0 == s_largest["mean"][1]["Dice"]
    written = json.loads((val_dir / "summary_surface_pp_largest.json").read_text())
    assert written["scoring"]["postprocessing"]["rule"] == "largest"
    out = tmp_path / "bench"
    rc = main(["benchmark", "-d", "987", "-c", "3d_fullres", "--skip-models", "--cv", "--folds", "0", "-tr", STOCK,
               f"C2F={folder}", "--postprocessing", "largest", "--out", str(out)])
    assert rc == 0
    again = json.loads((val_dir / "summary_surface_pp_largest.json").read_text())
    assert again["mean"] == written["mean"] and (val_dir / "summary.json").read_text() == baseline
    row = {r["trainer"]: r for r in _read_csv(out / "benchmark.csv")}["C2F"]
    assert float(row["pancreas_Dice_mean"]) == pytest.approx(s_largest["mean"][1]["Dice"])
    assert float(row["pancreas_HD95_mean"]) == pytest.approx(s_largest["mean"][1]["HD95"])


def test_accuracy_pred_folders(fake_nnunet, tmp_path, capsys):
    ds = fake_nnunet
    rng = np.random.default_rng(5)
    labels = tmp_path / "labels"
    preds = {"good": tmp_path / "pa", "bad": tmp_path / "pb"}
    for c, s in ds["gt"].items():
        _write_seg(labels / f"{c}.nii.gz", s)
        _write_seg(preds["good"] / f"{c}.nii.gz", _perturb(s, rng, 1))
        _write_seg(preds["bad"] / f"{c}.nii.gz", _perturb(s, rng, 3))
    out = tmp_path / "out_pred"
    rc = main(["benchmark", "--skip-models", "--pred", f"good={preds['good']}", f"bad={preds['bad']}",
               "--reference", "good", "--labels", str(labels), "-djfile", str(ds["pre"] / ds["name"] / "dataset.json"),
               "-pfile", str(ds["pre"] / ds["name"] / "plans.json"), "--out", str(out)])
    assert rc == 0
    assert "p=" in capsys.readouterr().out
    assert (out / "boxplot_hd95.png").is_file()
    _check_p_against_per_case(out, "bad", "good", "pancreas", "Dice")
    _check_p_against_per_case(out, "bad", "good", "tumour", "HD95")


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("argv,msg", [
    (["--patch-size", "32", "32", "-tr", "nnUNetTrainerNoSuchThing"], "unknown trainer 'nnUNetTrainerNoSuchThing'"),
    (["-d", "986", "-c", "3d_fullres"], "dataset '986' not found"),
    (["-d", "987", "-c", "3d_lowres"], "configuration '3d_lowres' not in"),
    (["--patch-size", "30", "30"], "not divisible"),
    (["--skip-models", "--pred", "a=/nonexistent/pred_a", "--labels", "/tmp"], "missing prediction folder "
                                                                               "/nonexistent/pred_a"),
    (["--skip-models"], "nothing to do"),
])
def test_bad_input_one_line_exit_2_nothing_written(fake_nnunet, tmp_path, capsys, argv, msg):
    out = tmp_path / "never"
    rc = main(["benchmark", *argv, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert msg in err and len(err.splitlines()) == 1, err
    if "unknown trainer" in msg:
        assert OURS in err  # lists ours
    assert not out.exists()


def test_missing_plans_file(fake_nnunet, tmp_path, capsys):
    rc = main(["benchmark", "-d", "987", "-c", "3d_fullres", "-p", "NoSuchPlans", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "NoSuchPlans.json" in err and not (tmp_path / "o").exists()


def test_dataset_plans_models_and_cv_in_one_table(fake_nnunet, tmp_path, capsys):
    """-d/-c plans from nnUNet_preprocessed: model figures and CV accuracy in the same rows (Table 3 layout)."""
    out = tmp_path / "both"
    rc = main(["benchmark", "-d", "987", "-c", "3d_fullres", "--cv", "-tr", OURS, STOCK, "--warmup", "0",
               "--repeats", "1", "--volume-shape", "16", "20", "16", "--no-mirroring", "--out", str(out)])
    assert rc == 0, capsys.readouterr()
    md = (out / "benchmark.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Trainer"))
    for col in ("Params (M)", "GFLOPs", "Train step (ms)", "Peak mem (MiB)", "Inference (s)", "pancreas Dice",
                "tumour NSD", "Missing folds"):
        assert col in header
    rows = {r["trainer"]: r for r in _read_csv(out / "benchmark.csv")}
    n, *_ = _direct_param_count(STOCK, (16, 16, 16), 2)
    assert int(rows[STOCK]["params"]) == int(rows[OURS]["params"]) == n
    assert all(float(rows[t][k]) > 0 for t in rows for k in ("flops", "train_ms", "peak_mib", "infer_s"))
    meta = json.loads((out / "benchmark.json").read_text())["meta"]
    assert meta["patch_size"] == [16, 16, 16] and meta["batch_size"] == 2 and meta["trainers"] == [OURS, STOCK]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("patch,batch", [((64, 64), 4), ((16, 64, 64), 2)])
def test_model_figures_on_cuda(patch, batch):
    """The GPU tables' code path (docs/dmc_net.md, docs/dlkunet.md, docs/benchmarks.md): each trainer's own
    train_step with AMP on CUDA, torch.cuda.max_memory_allocated as peak memory."""
    plans, dj, cfg = B.explicit_plans(patch, batch)
    trainers = [STOCK, "nnUNetTrainerDMCNet", "nnUNetTrainerDLKUNetS", "nnUNetTrainerMoNet", "nnUNetTrainerResDSN"]
    res = B.run_model_figures(trainers, plans, dj, cfg, device="cuda", warmup=2, repeats=3,
                              volume_shape=[2 * p for p in patch] if len(patch) == 3 else [4, *(2 * p for p in patch)],
                              log=lambda *a: None)
    for r in res:
        assert "error" not in r, r.get("traceback", r.get("error"))
        assert r["train_ms"] > 0 and r["peak_mib"] > 0 and r["infer_s"] > 0
        assert r["step"] == "trainer.train_step", r["notes"]
