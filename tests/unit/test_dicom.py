"""DICOM series in (nnunet_ext.dicom.series / inputs), DICOM SEG out, statistics, previews, progress: on tiny
synthetic series written with the tags of a PACS export (unsigned storage, intercept -1024, shuffled files,
InstanceNumber reversed, oblique orientation, two series and a localizer in one study)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from nnunet_ext.data.phantom import LABELS, draw_case
from nnunet_ext.dicom.inputs import detect_layout, prepare_inputs, scan_inputs
from nnunet_ext.dicom.outputs import ExtraOutputs, check_extras, split_extra_flags, write_extras
from nnunet_ext.dicom.progress import CaseProgress
from nnunet_ext.dicom.series import scan_folder
from nnunet_ext.dicom.synthetic import write_ct_series, write_localizer
from nnunet_ext.errors import UserError

SPACING = (2.5, 0.8, 0.7)  # z, y, x
DJ = {"labels": LABELS, "file_ending": ".nii.gz", "channel_names": {"0": "CT"}}


def _rotation(a=0.3, b=0.2, c=0.1):
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xyz", [a, b, c]).as_matrix()


@pytest.fixture(scope="module")
def ct():
    """A tiny synthetic CT (12 x 32 x 40, HU) and its labels, as the NIfTI the series is made from."""
    img, lab = draw_case(np.random.default_rng(3), (12, 32, 40), SPACING, with_tumour=True)
    return img.astype(np.int16), lab


def _nifti(arr, path, spacing_zyx=SPACING, origin=(10.0, -20.0, 30.0), direction=None):
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    im.SetOrigin(origin)
    im.SetDirection(tuple(np.eye(3).ravel() if direction is None else np.asarray(direction).ravel()))
    sitk.WriteImage(im, str(path), True)
    return path


def _study(root: Path, vol, oblique=True):
    """Two CT series (the second a 6-slice one) and a localizer in one study folder."""
    d = _rotation() if oblique else np.eye(3)
    uid = pydicom.uid.generate_uid()
    a = write_ct_series(vol, root / "study" / "s2", SPACING, (10, -20, 30), d.ravel(), study_uid=uid, seed=1)
    b = write_ct_series(vol[:6], root / "study" / "s3", SPACING, (10, -20, 30), series_number=3, study_uid=uid,
                        seed=2)
    write_localizer(root / "study" / "loc", study_uid=uid)
    return a, b, d


def _listing(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------------------------------------ reading
def test_ct_round_trip_oblique_shuffled(tmp_path, ct):
    vol, _ = ct
    a, _, d = _study(tmp_path, vol)
    assert [int(pydicom.dcmread(f).InstanceNumber) for f in a] == list(range(12, 0, -1))
    assert pydicom.dcmread(a[0]).PixelRepresentation == 0 and float(pydicom.dcmread(a[0]).RescaleIntercept) == -1024
    assert sorted(p.name for p in a) != [p.name for p in a]  # file names are not in slice order
    lines = []
    series = scan_folder(tmp_path / "study", log=lines.append)
    assert [s.case for s in series] == ["P001_2", "P001_3"]
    assert len(lines) == 1 and "localizer" in lines[0]
    assert series[0].files == [str(f) for f in a]  # sorted along the normal
    out = tmp_path / "pred"
    inputs = prepare_inputs(tmp_path / "study", out, ".nii.gz", 1, log=lambda s: None)
    try:
        staged = sitk.ReadImage(inputs.images["P001_2"])
        # geometry: what SimpleITK's own GDCM series reading gives
        r = sitk.ImageSeriesReader()
        uid = pydicom.dcmread(a[0]).SeriesInstanceUID
        r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "study" / "s2"), uid))
        ref = r.Execute()
        assert staged.GetSize() == ref.GetSize() == (40, 32, 12)
        np.testing.assert_allclose(staged.GetSpacing(), ref.GetSpacing(), rtol=1e-6)
        np.testing.assert_allclose(staged.GetOrigin(), ref.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(staged.GetDirection(), ref.GetDirection(), atol=1e-6)
        np.testing.assert_allclose(np.reshape(staged.GetDirection(), (3, 3)), d, atol=1e-6)
        # HU equal the NIfTI the series was made from
        src = sitk.ReadImage(str(_nifti(vol, tmp_path / "src.nii.gz", direction=d)))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(staged), sitk.GetArrayFromImage(src))
        np.testing.assert_allclose(staged.GetOrigin(), src.GetOrigin(), atol=1e-4)
        assert inputs.staging.parent == tmp_path and not out.exists()
    finally:
        inputs.cleanup()
    assert not inputs.staging.exists()


def test_case_names_made_unique(tmp_path, ct):
    vol = ct[0][:3]
    write_ct_series(vol, tmp_path / "a", SPACING, series_number=2, seed=1)
    f = write_ct_series(vol, tmp_path / "b", SPACING, series_number=2, seed=2)
    for p in f:
        ds = pydicom.dcmread(p)
        ds.StudyDate = "20250505"
        ds.save_as(p)
    assert sorted(s.case for s in scan_folder(tmp_path)) == ["P001_20250505_2", "P001_20260101_2"]


# ------------------------------------------------------------------------------------------------ bad input
def _edit(files, fn):
    for p in files:
        ds = pydicom.dcmread(p)
        fn(ds)
        ds.save_as(p)


def _bad_missing(root, vol):
    f = write_ct_series(vol, root / "in" / "s", SPACING)
    os.remove(f[5])
    return "gap of 5.00 mm between slices 4 and 5"


def _bad_uneven(root, vol):
    f = write_ct_series(vol, root / "in" / "s", SPACING)
    _edit(f[7:], lambda ds: setattr(ds, "ImagePositionPatient", [0, 0, float(ds.ImagePositionPatient[2]) + 0.8]))
    return "uneven slice spacing: 3.30 mm"


def _bad_sizes(root, vol):
    f = write_ct_series(vol, root / "in" / "s", SPACING)

    def shrink(ds):
        ds.Rows = 30
        ds.PixelData = np.zeros((30, 40), np.uint16).tobytes()
    _edit(f[3:4], shrink)
    return "slices of different sizes: 32x40"


def _bad_no_ct(root, vol):
    write_localizer(root / "in" / "loc")
    f = write_ct_series(vol[:3], root / "in" / "mr", SPACING)
    _edit(f, lambda ds: setattr(ds, "Modality", "MR"))
    return "no CT series found"


def _bad_truncated(root, vol):
    f = write_ct_series(vol, root / "in" / "s", SPACING)
    f[6].write_bytes(f[6].read_bytes()[:-700])
    return f"{f[6]}: truncated DICOM file"


def _bad_corrupt(root, vol):
    f = write_ct_series(vol, root / "in" / "s", SPACING)
    f[2].write_bytes(f[2].read_bytes()[:200])
    return f"{f[2]}: corrupt or truncated DICOM file"


def _bad_compressed(root, vol):
    from pydicom.encaps import encapsulate

    f = write_ct_series(vol, root / "in" / "s", SPACING)

    def htj2k(ds):  # High-Throughput JPEG 2000: no decoder in SimpleITK's GDCM
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
        ds["PixelData"].VR = "OB"
    _edit(f, htj2k)
    return "cannot be decoded by the installed SimpleITK/GDCM"


def _bad_names(root, vol):
    write_ct_series(vol[:3], root / "in" / "a", SPACING, seed=1)
    write_ct_series(vol[:3], root / "in" / "b", SPACING, seed=2)
    return "would both be case P001_20260101_2_120002"


@pytest.mark.parametrize("make", [_bad_missing, _bad_uneven, _bad_sizes, _bad_no_ct, _bad_truncated, _bad_corrupt,
                                  _bad_compressed, _bad_names], ids=lambda f: f.__name__[5:])
def test_bad_input_one_line_nothing_written(tmp_path, ct, make, capfd):
    expected = make(tmp_path, ct[0])
    before = _listing(tmp_path)
    capfd.readouterr()
    with pytest.raises(UserError) as e:
        prepare_inputs(tmp_path / "in", tmp_path / "out", ".nii.gz", 1, log=lambda s: None)
    msg = str(e.value)
    assert expected in msg and "\n" not in msg
    assert str(tmp_path / "in") in msg
    assert _listing(tmp_path) == before
    assert capfd.readouterr() == ("", "")  # nothing else printed (decoders write to the C streams)


def test_layouts(tmp_path, ct):
    vol = ct[0]
    nn = tmp_path / "nn"
    nn.mkdir()
    _nifti(vol, nn / "A_0000.nii.gz")
    assert detect_layout(nn, ".nii.gz", 1) == "nnunet"
    anyn = tmp_path / "any"
    anyn.mkdir()
    _nifti(vol, anyn / "liver scan.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(anyn / "liver scan.nii.gz")), str(anyn / "b.nrrd"))
    assert detect_layout(anyn, ".nii.gz", 1) == "images"
    with pytest.raises(UserError, match="needs a one-channel model"):
        scan_inputs(anyn, ".nii.gz", 2)
    inputs = prepare_inputs(anyn, tmp_path / "out", ".nii.gz", 1)
    try:
        assert sorted(inputs.images) == ["b", "liver scan"]
        assert Path(inputs.images["liver scan"]).is_symlink()
        got = sitk.ReadImage(inputs.images["b"])
        assert Path(inputs.images["b"]).name == "b_0000.nii.gz"
        np.testing.assert_array_equal(sitk.GetArrayFromImage(got), vol)
    finally:
        inputs.cleanup()
    _nifti(vol, anyn / "c_0000.nii.gz")
    with pytest.raises(UserError, match="mixes nnU-Net's CASE_XXXX.nii.gz naming .c_0000.nii.gz. with other images"):
        scan_inputs(anyn, ".nii.gz", 1)
    (anyn / "c_0000.nii.gz").unlink()
    with pytest.raises(UserError, match="--dicom_seg needs DICOM input"):
        check_extras(ExtraOutputs(dicom_seg=True), scan_inputs(anyn, ".nii.gz", 1))


def test_case_names_differing_only_in_letter_case(tmp_path, ct):
    """``Scan.nii.gz`` and ``scan.nrrd`` would be one output file on a case-insensitive file system: one line
    naming both files, nothing written."""
    d = tmp_path / "in"
    d.mkdir()
    a = _nifti(ct[0][:4], d / "Scan.nii.gz")
    b = d / "scan.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(a)), str(b))
    before = _listing(tmp_path)
    with pytest.raises(UserError) as e:
        prepare_inputs(d, tmp_path / "out", ".nii.gz", 1)
    msg = str(e.value)
    assert str(a) in msg and str(b) in msg and "\n" not in msg
    assert _listing(tmp_path) == before


def test_nnunet_layout_only_with_the_models_channels(tmp_path, ct):
    """``_XXXX`` is a channel only where XXXX is one of the model's channels and every case has all of them."""
    vol = ct[0][:4]

    def folder(name, files):
        d = tmp_path / name
        d.mkdir()
        for f in files:
            _nifti(vol, d / f)
        return d

    ids = folder("ids", ["patient_1234.nii.gz", "patient_5678.nii.gz"])
    assert detect_layout(ids, ".nii.gz", 1) == "images"
    assert detect_layout(ids, ".nii.gz", 2) == "images"
    assert sorted(scan_inputs(ids, ".nii.gz", 1).images) == ["patient_1234", "patient_5678"]
    two = folder("two", ["a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz", "b_0001.nii.gz"])
    assert detect_layout(two, ".nii.gz", 2) == "nnunet"
    with pytest.raises(UserError, match=r"a_0001\.nii\.gz is not named CASE_XXXX\.nii\.gz with XXXX a channel of this "
                                        r"model \(0000 to 0000\)"):
        detect_layout(two, ".nii.gz", 1)  # a two-channel folder, a one-channel model: not 4 one-channel cases
    (two / "b_0001.nii.gz").unlink()  # case b lacks channel 1
    assert detect_layout(two, ".nii.gz", 2) == "images"
    with pytest.raises(UserError, match=r"needs a one-channel model.*every case's CASE_0000\.nii\.gz to "
                                        r"CASE_0001\.nii\.gz"):
        scan_inputs(two, ".nii.gz", 2)
    one = folder("one", ["a_0000.nii.gz", "b_0000.nii.gz"])
    assert detect_layout(one, ".nii.gz", 1) == "nnunet"


@pytest.mark.parametrize("fault", ["checkpoint", "cascade", "option"])
def test_model_checked_before_inputs_are_read(tmp_path, ct, monkeypatch, capsys, fault):
    """predict and predict-c2f check the model and their arguments (checkpoint, cascade configuration, options)
    before the any-named ``-i`` folder is read or staged: one line, exit 2, nothing written."""
    from nnunet_ext.benchmark.bad_inputs import DS, make_world, tree, truncate
    from nnunet_ext.cli import main
    from nnunet_ext.dicom import inputs as inputs_module
    from nnunet_ext.inference import predict as predict_module

    world = make_world(tmp_path, monkeypatch.setenv)
    anyn = tmp_path / "any"
    anyn.mkdir()
    _nifti(ct[0][:4], anyn / "liver scan.nii.gz")

    def no_reading(*a, **k):
        raise AssertionError("-i read before the model was checked")
    for module in (inputs_module, predict_module):
        monkeypatch.setattr(module, "scan_inputs", no_reading)
        monkeypatch.setattr(module, "stage", no_reading)
    ck = tmp_path / "res" / DS / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "fold_0" / "checkpoint_final.pth"
    conf, opt, expect = "3d_fullres", [], str(ck)
    if fault == "checkpoint":
        truncate(ck, keep=0.7)
    elif fault == "cascade":
        conf, expect = "3d_cascade_fullres", "cascade stage"
    else:
        opt, expect = ["--coarse-step", "2"], "--coarse-step must be in (0, 1]"
    runs = [["predict-c2f", "-i", anyn, "-o", tmp_path / "o", "-d", DS, "--coarse", f"nnUNetTrainer:{conf}",
             "--fine", f"nnUNetTrainer:{conf}", "-f", "0", "-device", "cpu", *opt]]
    if fault != "option":
        runs.append(["predict", "-i", anyn, "-o", tmp_path / "o", "-d", DS, "-c", conf, "-f", "0", "-device", "cpu"])
    before = tree(tmp_path)
    for argv in runs:
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert rc == 2 and len(err) == 1 and expect in err[0], (argv[0], err)
        assert tree(tmp_path) == before


def test_split_extra_flags():
    rest, ex = split_extra_flags(["-i", "x", "--preview", "-o", "y", "--quiet"])
    assert rest == ["-i", "x", "-o", "y"] and ex == ExtraOutputs(preview=True, quiet=True)


# ------------------------------------------------------------------------------------------------ outputs
def test_dicom_seg_round_trip(tmp_path, ct):
    import highdicom as hd

    from nnunet_ext.dicom.seg import read_seg_labels, segment_labels, write_seg

    vol, lab = ct
    a, _, _ = _study(tmp_path, vol)
    s = scan_folder(tmp_path / "study", log=lambda x: None)[0]
    path = write_seg(lab, s, DJ, tmp_path / "x.seg.dcm")
    assert segment_labels(path) == ["pancreas", "tumour"]
    back = read_seg_labels(path, s)
    np.testing.assert_array_equal(back[..., 0], lab == 1)
    np.testing.assert_array_equal(back[..., 1], lab == 2)
    seg = hd.seg.segread(str(path))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == s.uid
    refs = {str(i.ReferencedSOPInstanceUID) for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs == {str(pydicom.dcmread(f).SOPInstanceUID) for f in a}
    # each frame lies on the source slice whose position it carries
    sop_to_k = {str(pydicom.dcmread(f).SOPInstanceUID): k for k, f in enumerate(a)}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        src = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = sop_to_k[str(src)]
        pos = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(pos, [float(v) for v in pydicom.dcmread(a[k]).ImagePositionPatient], atol=1e-3)


def test_statistics_against_numpy(ct):
    from scipy import ndimage

    from nnunet_ext.dicom.statistics import structure_statistics

    vol, lab = ct
    lab = lab.copy()
    lab[0, 0, 0] = 2  # a second tumour component
    d = _rotation()
    spacing_xyz = SPACING[::-1]
    rows = structure_statistics(vol, lab, spacing_xyz, (1.0, 2.0, 3.0), d.ravel(), {1: "pancreas", 2: "tumour",
                                                                                     3: "absent"})
    for r in rows[:2]:
        m = lab == r["label"]
        v = vol[m].astype(float)
        assert r["voxels"] == m.sum()
        assert r["volume_ml"] == pytest.approx(m.sum() * np.prod(SPACING) / 1000)
        assert (r["mean"], r["std"], r["min"], r["max"]) == pytest.approx((v.mean(), v.std(), v.min(), v.max()))
        assert r["components"] == ndimage.label(m, np.ones((3, 3, 3)))[1]
        zyx = np.argwhere(m)
        first, last = zyx.min(0)[::-1], zyx.max(0)[::-1]
        assert r["bbox_first_xyz"] == first.tolist() and r["bbox_last_xyz"] == last.tolist()
        np.testing.assert_allclose(r["bbox_extent_mm_xyz"], (last - first + 1) * spacing_xyz, atol=1e-3)
        np.testing.assert_allclose(r["bbox_first_lps_mm"], np.array([1, 2, 3]) + d @ (first * spacing_xyz), atol=1e-3)
    assert rows[1]["components"] == 2
    assert rows[2] == {"label": 3, "name": "absent", "voxels": 0, "volume_ml": 0.0}


def test_preview_size_and_colours(tmp_path, ct):
    from PIL import Image

    from nnunet_ext.dicom.preview import ALPHA, colour, preview_size, write_case_preview, write_overview

    vol, lab = ct
    names = {1: "pancreas", 2: "tumour", 3: "absent"}
    thumb = write_case_preview(vol, lab, SPACING[::-1], names, tmp_path / "p.png", title="c")
    png = np.asarray(Image.open(tmp_path / "p.png").convert("RGB")).astype(int)
    assert png.shape[1::-1] == preview_size(2)  # one row per structure present
    grey = np.ptp(png, axis=-1) <= 2
    for v in (1, 2):
        assert np.all(png == colour(v), axis=-1).sum() > 20, v  # the legend patch, in the label's colour
        # the overlay: the label's colour blended with opacity ALPHA over a grey CT pixel
        under = (png - ALPHA * np.array(colour(v))) / (1 - ALPHA)
        blended = (np.ptp(under, axis=-1) <= 3) & np.all((under > -3) & (under < 258), axis=-1) & ~grey
        assert blended.sum() > 50, v
    assert not np.all(png == colour(3), axis=-1).any()  # no colour for an absent label
    assert thumb[0].shape == vol.shape[1:]
    write_overview({"a": thumb, "b": thumb}, tmp_path / "o.png", names)
    assert Image.open(tmp_path / "o.png").size == (400, 250)


def test_progress_plain_when_not_a_terminal(tmp_path, capsys):
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    with CaseProgress(tmp_path, ["a", "b"], ".nii.gz") as p:
        (tmp_path / "b.nii.gz").write_bytes(b"x")
    line = p.summary()
    out = capsys.readouterr()
    assert out.err == ""  # stderr is not a terminal: no bar
    assert out.out.strip() == line and line.startswith("2 of 2 case(s) predicted in ") and str(tmp_path) in line
    with CaseProgress(tmp_path, ["a"], ".nii.gz", quiet=True) as q:
        pass
    q.summary()
    assert capsys.readouterr().out == ""


def test_write_extras(tmp_path, ct):
    vol, lab = ct
    _study(tmp_path, vol, oblique=False)
    out = tmp_path / "out"
    inputs = prepare_inputs(tmp_path / "study", out, ".nii.gz", 1, log=lambda s: None)
    try:
        out.mkdir()
        ref = sitk.ReadImage(inputs.images["P001_2"])
        pred = sitk.GetImageFromArray(lab)
        pred.CopyInformation(ref)
        sitk.WriteImage(pred, str(out / "P001_2.nii.gz"))  # P001_3 has no prediction: left out, one line
        lines = []
        written = write_extras(inputs, out, ".nii.gz", DJ, ExtraOutputs(True, True, True), log=lines.append)
    finally:
        inputs.cleanup()
    assert len(lines) == 1 and "P001_3" in lines[0]
    assert {p.name for p in written} == {"P001_2.seg.dcm", "P001_2.png", "overview.png", "statistics.csv",
                                         "statistics.json"}
    stats = json.loads((out / "statistics.json").read_text())
    assert [r["voxels"] for r in stats["P001_2"]] == [int((lab == 1).sum()), int((lab == 2).sum())]
    assert (out / "statistics.csv").read_text().count("\n") == 3


def test_progress_bar_on_a_terminal(tmp_path, monkeypatch, capsys):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with CaseProgress(tmp_path, ["a", "b"], ".nii.gz"):
        (tmp_path / "a.nii.gz").write_bytes(b"x")
        (tmp_path / "b.nii.gz").write_bytes(b"x")
    bar = term.getvalue()
    assert "cases:" in bar and "0/2" in bar and "2/2" in bar and "<" in bar  # counts and ETA
