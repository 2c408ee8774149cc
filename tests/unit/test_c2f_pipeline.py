"""The coarse-to-fine pipeline per case (``nnunet_ext.c2f.pipeline``) on fake stages: crop to the coarse box and paste
back, the two-stage vote, the fallbacks, the coarse grid factor, atomic outputs; ``predict-c2f``'s flags."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nnunet_ext.c2f import pipeline as c2f


def _predictor(name, tf=(0, 1, 2)):
    return SimpleNamespace(name=name, plans_manager=SimpleNamespace(transpose_forward=list(tf),
                                                                    transpose_backward=list(np.argsort(tf))))


def _fake_stages(monkeypatch, coarse_mask, fine_label=2):
    """Stage stand-ins on an identity geometry (no crop, no resampling): the coarse "logits" are ``coarse_mask``;
    the fine stage labels every voxel of the box it is given ``fine_label`` and records the box's shape; a
    whole-volume fine stage (the ``--fallback fine`` path) records the volume's shape; export is the identity."""
    seen = []

    def preprocess(predictor, image, spacing):
        shape = image.shape[1:]
        props = {"shape_after_cropping_and_before_resampling": shape, "shape_before_cropping": shape,
                 "bbox_used_for_cropping": [[0, n] for n in shape], "spacing": list(spacing)}
        return c2f.Preprocessed(image, props, 0.0)

    def predict_logits(predictor, data):
        if predictor.name == "coarse":
            return coarse_mask.copy()
        seen.append(("whole", data.shape[1:]))
        return np.full(data.shape[1:], fine_label, np.uint8)

    def box_logits(predictor, pre, box):
        seen.append(tuple(hi - lo for lo, hi in box))
        out = np.zeros(pre.data.shape[1:], np.uint8)
        out[tuple(slice(lo, hi) for lo, hi in box)] = fine_label
        return out

    monkeypatch.setattr(c2f, "preprocess", preprocess)
    monkeypatch.setattr(c2f, "predict_logits", predict_logits)
    monkeypatch.setattr(c2f, "grid_foreground", lambda p, logits: np.asarray(logits) > 0)
    monkeypatch.setattr(c2f, "export", lambda p, logits, props: np.asarray(logits, np.uint8))
    monkeypatch.setattr(c2f, "box_logits_on_grid", box_logits)
    monkeypatch.setattr(c2f, "grid_spacing_of", lambda p, props: props["spacing"])
    monkeypatch.setattr(c2f, "same_preprocessing", lambda a, b: True)
    return seen


def _reader(image, spacing):
    return SimpleNamespace(read_images=lambda files: (image, {"spacing": list(spacing)}))


def test_predict_case_crops_to_the_coarse_box_and_pastes_back(monkeypatch):
    shape, spacing = (20, 40, 50), [2.5, 0.8, 0.8]
    image = np.zeros((1, *shape), np.float32)
    coarse = np.zeros(shape, np.uint8)
    coarse[8:12, 10:20, 20:30] = 1
    coarse[0, 0, 0] = 1  # a stray voxel: not chosen (< 0.2 of the foreground, not the largest) for the box
    seen = _fake_stages(monkeypatch, coarse)
    seg, _, rec = c2f.predict_case("case", ["x"], _predictor("coarse"), _predictor("fine"), _reader(image, spacing),
                                   "c2f", margin_mm=2.0, min_component_fraction=0.2)
    # 2 mm: 1 slice at 2.5 mm, ceil(2.5) = 3 pixels at 0.8 mm
    box = ((7, 13), (7, 23), (17, 33))
    assert rec["boxes"] == [[list(b) for b in box]] and rec["fallback"] is None
    assert seen == [(6, 16, 16)]  # the fine model saw the crop only
    expected = np.zeros(shape, np.uint8)
    expected[7:13, 7:23, 17:33] = 2  # pasted back, background outside the box; the output is not filtered
    np.testing.assert_array_equal(seg, expected)
    assert rec["fine_voxels_fraction"] == pytest.approx(6 * 16 * 16 / np.prod(shape))
    assert all(rec[k] >= 0 for k in ("preprocess_s", "coarse_s", "box_s", "fine_s", "export_s"))
    assert rec["total_s"] == pytest.approx(sum(rec[k] for k in ("preprocess_s", "coarse_s", "box_s", "fine_s",
                                                                "export_s")))


def test_predict_case_margin_defaults_to_the_fine_trainers(monkeypatch):
    """No --margin-mm: the fine trainer's own training margin, converted on the fine grid (boxes.fine_margin_voxels):
    nnUNetTrainerResDSNFine (10 mm), an old _fine10vox trainer (10 voxels), a model not trained on boxes (10 mm)."""
    shape, spacing = (20, 60, 60), [2.5, 0.8, 0.8]
    coarse = np.zeros(shape, np.uint8)
    coarse[9:11, 28:32, 28:32] = 1
    _fake_stages(monkeypatch, coarse)
    for trainer, box in (("nnUNetTrainerResDSNFine", ((5, 15), (15, 45), (15, 45))),
                         ("nnUNetTrainerPlainUNet_fine10vox", ((0, 20), (18, 42), (18, 42))),
                         ("nnUNetTrainerPlainUNet", ((5, 15), (15, 45), (15, 45)))):
        fine = _predictor("fine")
        fine.trainer_name = trainer
        _, _, rec = c2f.predict_case("c", ["x"], _predictor("coarse"), fine,
                                     _reader(np.zeros((1, *shape), np.float32), spacing), "c2f", None, 0.2)
        assert rec["boxes"] == [[list(b) for b in box]], trainer


def test_fragmented_coarse_mask_is_not_emptied():
    """Six equal blobs (each under 0.2 of the foreground): the largest is kept; the old rule emptied the mask."""
    seg = np.zeros((11, 20, 20), np.uint8)
    for i in range(0, 11, 2):
        seg[i, 2:5, 2:5] = 1
    seg[6, 2:5, 2:6] = 2  # one blob slightly larger: 12 of 57 voxels
    out = c2f.remove_small_components(seg, 0.2)
    assert (out > 0).sum() == 12 and (out[6] == seg[6]).all() and not out[[0, 2, 4, 8, 10]].any()


def test_predict_case_two_stage_votes_over_two_boxes(monkeypatch):
    shape = (20, 40, 50)
    coarse = np.zeros(shape, np.uint8)
    coarse[8:12, 10:20, 20:30] = 1
    seen = _fake_stages(monkeypatch, coarse, fine_label=1)
    seg, _, rec = c2f.predict_case("case", ["x"], _predictor("coarse"), _predictor("fine"),
                                   _reader(np.zeros((1, *shape), np.float32), [1.0, 1.0, 1.0]), "two-stage",
                                   margin_mm=10, min_component_fraction=0, ts_margins=(2,))
    b1 = ((6, 14), (8, 22), (18, 32))      # coarse-grid box + 2 coarse voxels
    b2 = ((0, 20), (0, 30), (10, 40))      # box on the fine grid + 10 mm (10 voxels), clipped
    assert rec["boxes"] == [[list(b) for b in b1], [list(b) for b in b2]]
    assert sorted(seen) == sorted([(8, 14, 14), (20, 30, 30)])
    # majority of (fine on b1, fine on b2, coarse mask): foreground where at least two agree = b1 (inside b2)
    expected = np.zeros(shape, np.uint8)
    expected[6:14, 8:22, 18:32] = 1
    np.testing.assert_array_equal(seg, expected)
    assert rec["coarse_factor"] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("fallback", ["coarse", "fine"])
def test_predict_case_no_coarse_foreground_fallback(monkeypatch, capsys, fallback):
    """Default: the coarse result (background) is the output, the fine model does not run; --fallback fine runs it
    on the whole volume. Either way the notice names the case and the record says which."""
    shape = (10, 20, 30)
    seen = _fake_stages(monkeypatch, np.zeros(shape, np.uint8), fine_label=1)
    seg, _, rec = c2f.predict_case("case_042", ["x"], _predictor("coarse"), _predictor("fine"),
                                   _reader(np.zeros((1, *shape), np.float32), [1.0, 1.0, 1.0]), "c2f", margin_mm=5,
                                   min_component_fraction=0.2, fallback=fallback)
    out = capsys.readouterr().out
    assert "case_042: the coarse model found no foreground" in out and rec["fallback"] == fallback
    assert rec["boxes"] is None
    if fallback == "coarse":
        assert seen == [] and not seg.any() and rec["fine_voxels_fraction"] == 0.0
    else:
        assert seen == [("whole", shape)] and (seg == 1).all() and rec["fine_voxels_fraction"] == 1.0


def test_predict_case_coarse_foreground_outside_the_fine_crop(monkeypatch, capsys):
    """Coarse foreground whose box maps outside the fine model's crop: no box, the fallback, and the notice says so
    (not "no foreground")."""
    shape = (10, 20, 30)
    coarse = np.zeros(shape, np.uint8)
    coarse[2:4, 5:8, 5:9] = 1
    seen = _fake_stages(monkeypatch, coarse, fine_label=1)
    monkeypatch.setattr(c2f, "grid_box_to_grid", lambda *a, **k: None)  # the box lies outside the fine crop
    seg, _, rec = c2f.predict_case("case_007", ["x"], _predictor("coarse"), _predictor("fine"),
                                   _reader(np.zeros((1, *shape), np.float32), [1.0, 1.0, 1.0]), "c2f", margin_mm=5,
                                   min_component_fraction=0.2)
    out = capsys.readouterr().out
    assert "case_007: the coarse foreground (24 voxels) gave no box inside the fine model's crop" in out
    assert "found no foreground" not in out
    assert rec["fallback"] == "coarse" and rec["boxes"] is None and seen == []
    np.testing.assert_array_equal(seg, coarse)  # the coarse result is the output


def test_pair_record_records_the_margin_it_is_given():
    """predict_c2f / crossval_c2f resolve the margin once; the record states that (mm, voxels) pair."""
    ref = SimpleNamespace(trainer="nnUNetTrainerPlainUNet_fine10vox", configuration="3d_fullres",
                          plans_name="nnUNetPlans", folds=["0"])
    margin = c2f.resolve_margin(None, ref.trainer)
    assert margin == (None, 10)
    rec = c2f.pair_record(ref, ref, "cpu", "c2f", 0.9, 0.5, margin, (2,), 0.2, "coarse")
    assert rec["margin_vox"] == 10 and rec.get("margin_mm") is None
    rec = c2f.pair_record(ref, ref, "cpu", "c2f", 0.9, 0.5, c2f.resolve_margin(7.5, ref.trainer), (2,), 0.2, "coarse")
    assert rec["margin_mm"] == 7.5 and rec.get("margin_vox") is None


def test_coarse_grid_factor_is_the_actual_one():
    # coarse grid (transposed axes) 10 x 20 x 25 over a cropped raw region of 30 x 60 x 100 (axes 2, 0, 1 of raw)
    props = {"shape_after_cropping_and_before_resampling": (30, 60, 100)}
    assert c2f.coarse_grid_factor((10, 20, 25), props, transpose_backward=(0, 1, 2)) == (3.0, 3.0, 4.0)
    assert c2f.coarse_grid_factor((10, 20, 25), props, transpose_backward=(1, 2, 0)) == (3.0, 4.0, 3.0)


def test_old_two_stage_margins_refused():
    with pytest.raises(c2f.UserError, match="--two-stage-coarse-margin 2"):
        c2f.check_options(0.9, 0.5, None, 0.2, "two-stage", "coarse", (2, 10))
    c2f.check_options(0.9, 0.5, None, 0.2, "two-stage", "coarse", (2,))


class _Writer:
    def write_seg(self, seg, path, props):
        Path(path).write_bytes(seg.tobytes())


def test_run_cases_atomic_output_failure_and_continue(monkeypatch, tmp_path):
    """Each case is renamed into place when complete; a failing case stops the run with one line naming it and
    keeps the finished ones (including the one still being written when it failed); --continue_prediction skips
    them."""
    calls = []

    def fake_load(files, *a):
        return SimpleNamespace(props={}, name=files[0][0])

    def fake_network(case, inp, *a, **kw):
        calls.append(case)
        if case == "c" and len(calls) < 4:
            raise RuntimeError("CUDA out of memory\nmore lines")
        rec = {"preprocess_s": 0.1, "coarse_s": 0.5, "box_s": 0.0, "fine_s": 0.5, "fallback": None,
               "boxes": [[[0, 2], [0, 2]]], "fine_voxels_fraction": 1.0}

        def finish():
            rec.update(export_s=0.1, total_s=1.2)
            return np.ones((2, 2), np.uint8)
        return finish, rec

    monkeypatch.setattr(c2f, "load_case", fake_load)
    monkeypatch.setattr(c2f, "network_part", fake_network)
    cases = {k: [f"{k}_0000.nii.gz"] for k in "abcd"}
    out = tmp_path / "out"
    args = (None, None, _Writer(), ".nii.gz")
    rest = ("c2f", (10.0, None), 0.2, (2,), "coarse")
    with pytest.raises(c2f.UserError) as e:
        c2f.run_cases(cases, out, *args, {"cases": {}}, *rest)
    msg = str(e.value)
    assert "case c failed" in msg and "CUDA out of memory" in msg and "\n" not in msg and "2 case(s)" in msg
    # b was in the writer when c failed: finished and kept; no partial file
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "b.nii.gz", c2f.TIMES_FILE]
    assert list(json.loads((out / c2f.TIMES_FILE).read_text())["cases"]) == ["a", "b"]
    rec = c2f.run_cases(cases, out, *args, {"cases": {}}, *rest, continue_prediction=True)
    assert calls == ["a", "b", "c", "c", "d"]  # a and b skipped on the second run
    assert sorted(rec["cases"]) == list("abcd") and rec["cases"]["d"]["total_s"] == 1.2
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{k}.nii.gz" for k in "abcd"] + [c2f.TIMES_FILE])


def test_run_cases_overlaps_preprocessing_and_export_with_the_networks(monkeypatch, tmp_path):
    """The next case is read and preprocessed, and the last one exported and written, while the networks run."""
    import threading
    import time

    events = []
    lock = threading.Lock()

    def log(what):
        with lock:
            events.append((what, threading.current_thread().name))

    def fake_load(files, *a):
        log(f"load {files[0]}")
        return SimpleNamespace(props={})

    def fake_network(case, inp, *a, **kw):
        log(f"net {case} start")
        time.sleep(0.3)
        log(f"net {case} end")
        rec = {"preprocess_s": 0, "coarse_s": 0, "box_s": 0, "fine_s": 0, "fallback": None, "boxes": [[[0, 1]]],
               "fine_voxels_fraction": 1.0}

        def finish():
            log(f"export {case}")
            time.sleep(0.1)
            log(f"export {case} end")
            rec.update(export_s=0, total_s=0)
            return np.ones((1,), np.uint8)
        return finish, rec

    monkeypatch.setattr(c2f, "load_case", fake_load)
    monkeypatch.setattr(c2f, "network_part", fake_network)
    cases = {k: [k] for k in "abc"}
    c2f.run_cases(cases, tmp_path / "o", None, None, _Writer(), ".nii.gz", {"cases": {}}, "c2f", (10.0, None), 0.2,
                  (2,), "coarse")
    order = [e for e, _ in events]
    threads = dict(events)
    assert order.index("load b") < order.index("net a end")  # b preprocessed during a's networks
    assert order.index("export a") < order.index("net b end")  # a exported during b's networks
    assert threads["load b"] != threads["net a start"] != threads["export a"]
    # one case in flight beside the current one: c is read only once a's export is written
    assert order.index("export a end") < order.index("load c")


def test_predict_c2f_flags_use_nnunet_spellings():
    from nnunet_ext.cli import build_parser

    base = ["predict-c2f", "-i", "in", "-o", "out", "-d", "1", "--coarse", "A:3d", "--fine", "B:3d"]
    a = build_parser("predict-c2f").parse_args(base)
    assert (a.chk, a.device, a.disable_tta, a.step_size, a.fallback, a.continue_prediction) == \
        ("checkpoint_final.pth", "auto", False, 0.5, "coarse", False)
    a = build_parser("predict-c2f").parse_args(base + ["-chk", "checkpoint_best.pth", "-device", "cpu", "--disable_tta",
                                          "-step_size", "0.3", "--continue_prediction", "--fallback", "fine",
                                          "-f", "0", "1"])
    assert (a.chk, a.device, a.disable_tta, a.step_size, a.fallback, a.continue_prediction, a.f) == \
        ("checkpoint_best.pth", "cpu", True, 0.3, "fine", True, ["0", "1"])
    old = build_parser("predict-c2f").parse_args(base + ["--chk", "x.pth", "--device", "cpu", "--disable-tta", "--fine-step", "0.4"])
    assert (old.chk, old.device, old.disable_tta, old.step_size) == ("x.pth", "cpu", True, 0.4)



def test_grid_foreground_is_the_argmax_foreground():
    """The box's coarse mask without the (slow) argmax over channels: equal to argmax > 0 (softmax, ties are
    background as argmax takes the first) and to nnU-Net's region rule (some sigmoid > 0.5)."""
    import torch

    from nnunet_ext.c2f.stages import grid_foreground

    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.integers(-2, 3, (3, 6, 7, 8)).astype(np.float16))  # many ties
    softmax = SimpleNamespace(label_manager=SimpleNamespace(has_regions=False))
    np.testing.assert_array_equal(grid_foreground(softmax, logits), logits.float().argmax(0).numpy() > 0)
    regions = SimpleNamespace(label_manager=SimpleNamespace(has_regions=True))
    np.testing.assert_array_equal(grid_foreground(regions, logits), (torch.sigmoid(logits.float()) > 0.5).any(0).numpy())
