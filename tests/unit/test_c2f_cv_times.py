"""nnunet_ext/benchmark/c2f_cv_times.py (the command benchmarks/c2f_cv_times.py): seconds per case of the C2F
cross-validation from the files the runs leave."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnunet_ext.benchmark import c2f_cv_times as cvt

LOG = """2026-11-30 16:14:22.809000: This split has 8 training and 2 validation cases.
2026-11-30 16:14:22.810137: predicting Case_000
2026-11-30 16:14:22.812443: Case_000, shape torch.Size([1, 48, 144, 144]), rank 0
2026-11-30 16:16:04.310137: predicting Case_003
2026-11-30 16:16:04.312000: Case_003, shape torch.Size([1, 48, 140, 150]), rank 0
2026-11-30 16:17:50.000000: Validation complete
2026-11-30 16:17:50.000100: Mean Validation Dice:  0.8
"""


def test_validation_seconds_between_cases_last_left_out():
    t = cvt.validation_seconds(LOG)
    assert t == {"Case_000": pytest.approx(101.5)}


def _fold(root: Path, f: int, cases: dict):
    d = root / f"fold_{f}" / "validation"
    d.mkdir(parents=True)
    (d / "c2f_times.json").write_text(json.dumps({"cases": cases}))


def test_main_ratio_and_times(tmp_path, capsys):
    c2f = tmp_path / "C2F"
    _fold(c2f, 0, {"a": {"coarse_s": 10.0, "fine_s": 2.0, "total_s": 12.0, "fallback": None},
                   "b": {"coarse_s": 10.0, "fine_s": 4.0, "total_s": 14.0, "fallback": "coarse"}})
    _fold(c2f, 1, {"c": {"coarse_s": 20.0, "fine_s": 2.0, "total_s": 22.0, "fallback": None}})
    tr = tmp_path / "Coarse"
    (tr / "fold_0").mkdir(parents=True)
    (tr / "fold_0" / "training_log_2026_11_30_16_00_00.txt").write_text(LOG)
    (tr / "fold_1").mkdir(parents=True)
    (tr / "fold_1" / "training_log_2026_11_30_17_00_00.txt").write_text(LOG.replace("Case_000", "Case_001"))
    fo = tmp_path / "FineOnly"
    for f, (n, wall) in enumerate([(2, 30.0), (1, 12.0)]):
        (fo / f"fold_{f}" / "validation").mkdir(parents=True)
        (fo / f"fold_{f}" / "validation" / "fine_only_times.json").write_text(json.dumps({"cases": n, "wall_s": wall}))
    out = tmp_path / "t.json"
    assert cvt.main(["--c2f", str(c2f), "--validation", f"Coarse={tr}", "--fine-only", str(fo), "--folds", "0", "1",
                     "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["c2f_over_coarse_ratio_of_sums"] == pytest.approx(48 / 40)
    assert res["c2f_over_coarse_ratio_per_case"]["max"] == pytest.approx(1.4)
    assert res["fallbacks"] == 1
    assert res["C2F (total)"]["mean_s"] == pytest.approx(16.0)
    v = res["Coarse (nnU-Net validation, sliding window)"]
    assert v["n"] == 2 and set(v["cases"]) == {"Case_000", "Case_001"}
    assert res["fine only (nnUNetv2_predict)"]["mean_s"] == pytest.approx((15 + 15 + 12) / 3)
    assert "C2F / coarse-only time: 1.200" in capsys.readouterr().out


def test_main_missing_fold_fails(tmp_path):
    c2f = tmp_path / "C2F"
    _fold(c2f, 0, {"a": {"coarse_s": 1.0, "fine_s": 1.0, "total_s": 2.0}})
    with pytest.raises(FileNotFoundError):
        cvt.main(["--c2f", str(c2f), "--folds", "0", "1"])
