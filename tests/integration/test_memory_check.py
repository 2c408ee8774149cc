"""The memory check's real measurement in a fresh process, and benchmarks/gpu_check.py's dry run and its CUDA check
(subprocesses)."""
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def memory_check():
    from nnunet_ext.benchmark import memory_check

    return memory_check


def test_one_measurement_in_a_fresh_process(memory_check, monkeypatch):
    # spawn: this pytest process has run torch's OpenMP pool, and a child forked from it can hang
    r = memory_check.add_estimates([memory_check.measure_fresh("plain_unet", (32, 32), start_method="spawn")])[0]
    assert "error" not in r, r
    # machine-independent: the model's parts, and the step holds at least the fp32 weights and gradients
    assert r["param_state_bytes"] == 16 * r["params"] and r["activation_bytes"] > 0
    assert r["measured_bytes"] >= 8 * r["params"]
    assert "| `plain_unet` | 2d | 32x32 | 2 |" in memory_check.table([r])



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

