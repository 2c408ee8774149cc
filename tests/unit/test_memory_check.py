"""benchmarks/memory_check.py (the planner's memory model against a CPU measurement) and benchmarks/gpu_check.py
(its GPU counterpart): the machine-independent parts, one real fresh-process measurement, the GPU check's dry run."""
import copy
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def memory_check():
    sys.path.insert(0, str(BENCH))
    try:
        import memory_check
    finally:
        sys.path.pop(0)
    return memory_check


def _row(arch, dim, fmap, params, measured, batch=2):
    return {"arch": arch, "dim": dim, "patch": [8] * dim, "batch": batch, "fmap": fmap, "params": params,
            "measured_bytes": measured}


def test_recalibration_fits_plainconvunet_and_replaces_only_the_misses(memory_check):
    from nnunet_ext.plans.planner import PARAM_STATE_BYTES, load_calibration

    c0 = 50e6  # the CPU overhead the fake measurements carry
    P = PARAM_STATE_BYTES
    table = copy.deepcopy(load_calibration())
    b = table["architectures"]["plain_unet"]["3d"]["bytes_per_element"]
    k_resdsn = table["architectures"]["resdsn"]["3d"]["kappa"]
    k_monet = table["architectures"]["monet"]["3d"]["kappa"]
    results = [_row("plain_unet", 3, f, p, c0 + P * p + b * 2 * f) for f, p in ((1e6, 1e6), (4e6, 2e6))]
    # resdsn: exactly the model with its meta kappa; monet: twice its meta kappa (a miss)
    results += [_row("resdsn", 3, f, 1e6, c0 + P * 1e6 + k_resdsn * b * 2 * f) for f in (1e6, 3e6)]
    results += [_row("monet", 3, f, 1e6, c0 + P * 1e6 + 2 * k_monet * b * 2 * f) for f in (1e6, 3e6)]
    assert memory_check.fit_reference(results, 3, b) == (pytest.approx(c0), b)
    changes = memory_check.recalibrate(results, table)
    arch = table["architectures"]
    assert table["cpu_check"]["overhead_bytes"]["3d"] == pytest.approx(c0, abs=1)
    assert arch["resdsn"]["3d"]["kappa"] == k_resdsn and "method" not in arch["resdsn"]["3d"]
    assert arch["monet"]["3d"]["kappa"] == pytest.approx(2 * k_monet, rel=1e-3)
    assert arch["monet"]["3d"]["meta_kappa"] == k_monet and arch["monet"]["3d"]["method"] == memory_check.METHOD
    assert len([c for c in changes if "monet" in c]) == 1
    # the recalibrated model reproduces the measurements it was fit to
    from nnunet_ext.plans.planner import memory_factor, reference_bytes_per_element

    assert memory_factor("monet", 3, table) == (pytest.approx(2 * k_monet, rel=1e-3),
                                               f"{memory_check.METHOD} (calibration table)")
    assert reference_bytes_per_element(3, table) == b


def test_calibrate_planner_check_ignores_a_cpu_recalibration():
    sys.path.insert(0, str(BENCH))
    try:
        import calibrate_planner
    finally:
        sys.path.pop(0)
    two_d = {"kappa": 1.4}
    a = {"architectures": {"monet": {"2d": two_d, "3d": {"kappa": 1.5}}}}
    b = {"architectures": {"monet": {"2d": two_d,
                                     "3d": {"kappa": 2.0, "meta_kappa": 1.5, "method": "cpu-rss-train-step"}}}}
    assert calibrate_planner._same(a, b) == [] and calibrate_planner._same(a, {"architectures": {}}) != []


def test_one_measurement_in_a_fresh_process(memory_check, monkeypatch):
    # spawn: this pytest process has run torch's OpenMP pool, and a child forked from it can hang; the spawned
    # child imports memory_check by name, from the parent's sys.path
    monkeypatch.syspath_prepend(str(BENCH))
    r = memory_check.add_estimates([memory_check.measure_fresh("plain_unet", (32, 32), start_method="spawn")])[0]
    assert "error" not in r, r
    # machine-independent: the model's parts, and the step holds at least the fp32 weights and gradients
    assert r["param_state_bytes"] == 16 * r["params"] and r["activation_bytes"] > 0
    assert r["measured_bytes"] >= 8 * r["params"]
    assert "| `plain_unet` | 2d | 32x32 | 2 |" in memory_check.table([r])


def test_same_network_groups(memory_check):
    groups = memory_check.same_network_groups(["plain_unet", "two_stage_unet", "monet", "dmc_unet_2d",
                                               "dmc_unet_3d"])
    assert groups == [["plain_unet", "two_stage_unet"], ["monet"], ["dmc_unet_2d", "dmc_unet_3d"]]


def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "gpu.md"
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--dry-run", "--out", str(out), "--archs",
                           "plain_unet", "--targets", "8"], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "nnUNet_compile": "f", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    rows = [l for l in text.splitlines() if l.startswith("| ") and "---" not in l][1:]
    assert [r.split("|")[1].strip() for r in rows] == ["stock nnU-Net", "`plain_unet`"]
    for r in rows:
        cells = [c.strip() for c in r.split("|")[1:-1]]
        assert cells[2] == "16x32x32" and cells[3] == "2" and float(cells[4]) > 0 and float(cells[6]) > 0
    assert "--dry-run" in text


def test_gpu_check_without_cuda_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--out", str(tmp_path / "g.md")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr and not (tmp_path / "g.md").exists()
