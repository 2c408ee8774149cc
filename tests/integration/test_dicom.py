"""``nnunet-ext predict`` on DICOM series through the real predictor (the shared MoNet 2d model): the prediction
from the series equals stock ``nnUNetv2_predict``'s from the NIfTI the series was made from, the DICOM SEG read
back gives it on the same slices, and the statistics, previews and summary line are written; bad input leaves
nothing behind."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.dicom.synthetic import write_ct_series, write_localizer
from tests.helpers import c2f_cmd, run

TRAINER = "nnUNetTrainerMoNet_1epoch_4iters"


def _dicom_study(ds, root, n=1):
    """The first ``n`` test images as CT series (patient = case), plus a localizer; returns {case: image file}."""
    cases = {}
    for i, img_file in enumerate(sorted(ds.images_ts.glob("*_0000.nii.gz"))[:n]):
        img = sitk.ReadImage(str(img_file))
        sp = img.GetSpacing()
        write_ct_series(sitk.GetArrayFromImage(img), root / f"series{i}", sp[::-1], img.GetOrigin(),
                        img.GetDirection(), patient_id=f"PAT{i}", series_number=5, seed=i)
        cases[f"PAT{i}_5"] = img_file
    write_localizer(root / "scout", patient_id="PAT0")
    return cases


def _predict_cmd(ds, i, o, *extra):
    return ["nnunet-ext", "predict", "-i", str(i), "-o", str(o), "-d", str(ds.dataset_id), "-c", "2d", "-tr", TRAINER,
            "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1", *extra]


def test_predict_dicom_equals_nifti_prediction(nnunet_dataset, monet_2d_run, tmp_path):
    from nnunet_ext.dicom.series import scan_folder
    from nnunet_ext.dicom.seg import read_seg_labels

    ds, (_, ref) = nnunet_dataset, monet_2d_run
    cases = _dicom_study(ds, tmp_path / "dicom")
    out = tmp_path / "out"
    proc = run(_predict_cmd(ds, tmp_path / "dicom", out, "--dicom_seg", "--statistics", "--preview"), ds.env)
    assert "skipped series of" in proc.stdout and "localizer" in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"{len(cases)} of {len(cases)} case(s) predicted in ") and str(out) in last
    assert proc.stderr.count("\r") == 0  # not a terminal: no progress bar
    assert not list(tmp_path.glob(".nnunet-ext-input-*"))  # staging removed
    series = {s.case: s for s in scan_folder(tmp_path / "dicom", log=lambda s: None)}
    for case, img_file in cases.items():
        mine = sitk.ReadImage(str(out / f"{case}.nii.gz"))
        stock = sitk.ReadImage(str(ref / img_file.name.replace("_0000.nii.gz", ".nii.gz")))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(mine), sitk.GetArrayFromImage(stock))
        np.testing.assert_allclose(mine.GetOrigin(), stock.GetOrigin(), atol=1e-3)
        np.testing.assert_allclose(mine.GetSpacing(), stock.GetSpacing(), rtol=1e-5)
        labels = sitk.GetArrayFromImage(mine)
        back = read_seg_labels(out / f"{case}.seg.dcm", series[case])
        present = [v for v in (1, 2) if (labels == v).any()] or [1]
        for k, v in enumerate(present):
            np.testing.assert_array_equal(back[..., k], labels == v)
        assert (out / "preview" / f"{case}.png").is_file()
    assert (out / "preview" / "overview.png").is_file()
    stats = json.loads((out / "statistics.json").read_text())
    assert sorted(stats) == sorted(cases)


def test_predict_bad_dicom_writes_nothing(nnunet_dataset, monet_2d_run, tmp_path):
    ds = nnunet_dataset
    _dicom_study(ds, tmp_path / "dicom", n=2)
    victim = sorted((tmp_path / "dicom" / "series1").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:-100])
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run(_predict_cmd(ds, tmp_path / "dicom", tmp_path / "out", "--statistics"), ds.env, check=False)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and str(victim) in err[0] and "truncated" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.slow  # ~60 s on a busy 2-core machine; the input and extras code it runs is predict's, tested above
@pytest.mark.xdist_group("c2f_pair")
def test_predict_c2f_any_named_images(nnunet_dataset, c2f_models, tmp_path):
    """predict-c2f takes a folder of any-named images (here a .nrrd) and writes <case>.nii.gz and the extras."""
    ds = nnunet_dataset
    img_file = sorted(ds.images_ts.glob("*_0000.nii.gz"))[0]
    (tmp_path / "in").mkdir()
    sitk.WriteImage(sitk.ReadImage(str(img_file)), str(tmp_path / "in" / "scan A.nrrd"))
    out = tmp_path / "out"
    cmd = c2f_cmd(ds, out, c2f_models.coarse, c2f_models.fine, "--statistics", "--quiet")
    cmd[cmd.index("-i") + 1] = str(tmp_path / "in")
    proc = run(cmd, ds.env)
    assert "case(s) predicted in" not in proc.stdout  # --quiet: no summary line
    pred = sitk.ReadImage(str(out / "scan A.nii.gz"))
    src = sitk.ReadImage(str(img_file))
    assert pred.GetSize() == src.GetSize()
    np.testing.assert_allclose(pred.GetOrigin(), src.GetOrigin(), atol=1e-3)
    rows = json.loads((out / "statistics.json").read_text())["scan A"]
    labels = sitk.GetArrayFromImage(pred)
    assert [r["voxels"] for r in rows] == [int((labels == 1).sum()), int((labels == 2).sum())]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # staging removed
