"""Long runs: ``predict-c2f`` over many cases in one process does not accumulate memory. The trend check of
``benchmarks/c2f_rss.py`` (which runs 50 cases and prints RSS every 10; figures in docs/workflows.md) on a few copies
of the fixture's test images (``-m slow``); the default run checks that the benchmark runs and samples, on two."""
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import shared, spec_of

pytestmark = pytest.mark.xdist_group("c2f_pair")  # the C2F pair of conftest

ROOT = Path(__file__).resolve().parents[2]
NUM_CASES = 8
WARM_UP = 2  # cases before memory settles (lazy imports, allocator pools, the first sliding windows)
#: the RSS sampled after a case swings by up to ~90 MiB (memory the allocator has not returned yet; the floor moves
#: in ~10-20 MiB steps: docs/workflows.md), so the trend is judged on the floor: the lowest RSS after the last half of
#: the cases against the lowest after the first half (after the warm-up). A per-case leak of L MiB raises it by ~3 L:
#: this catches leaks of ~10 MiB per case and more (a few float32 volumes of a fixture case; at CT scale one leaked
#: logits volume is hundreds of MiB)
RSS_FLOOR_TOLERANCE_MB = 32.0
#: the peak (VmHWM, what a scheduler kills on) also rises in allocator steps (+28 MiB once within 8 repeated cases,
#: +19 MiB from case 10 to 50 in the benchmark): from the middle of the run to its end it must stay within this
PEAK_TOLERANCE_MB = 64.0


def _c2f_rss(ds, coarse_fold, fine_fold, tmp, num_cases: int, every: int):
    images = sorted(ds.images_ts.glob("*_0000.nii.gz"))
    inp = tmp / "in"
    inp.mkdir()
    for i in range(num_cases):  # the fixture's test images under new case names, in turn
        shutil.copy(images[i % len(images)], inp / f"long_{i:03d}_0000.nii.gz")
    out_json = tmp / "rss.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "c2f_rss.py"), "--input", str(inp), "--output",
         str(tmp / "out"), "-d", str(ds.dataset_id), "--coarse", spec_of(coarse_fold), "--fine", spec_of(fine_fold),
         "--every", str(every), "--json", str(out_json)], env=ds.env, capture_output=True, text=True, timeout=1800)
    return SimpleNamespace(proc=proc, out_json=out_json, out=tmp / "out")


@shared("nnunet_dataset", "plain_unet_3d", "c2f_fine_3d")
def c2f_rss_run(ds, coarse_fold, fine_fold, tmp):
    """``benchmarks/c2f_rss.py`` over NUM_CASES copies of the test images with the C2F tests' pair."""
    return _c2f_rss(ds, coarse_fold, fine_fold, tmp, NUM_CASES, every=4)


@shared("nnunet_dataset", "plain_unet_3d", "c2f_fine_3d")
def c2f_rss_two_cases(ds, coarse_fold, fine_fold, tmp):
    """The same over two cases, sampled after each: the default run's check that the benchmark runs and samples."""
    return _c2f_rss(ds, coarse_fold, fine_fold, tmp, 2, every=1)


def test_predict_c2f_rss_samples_every_case(c2f_rss_two_cases):
    proc, out_json = c2f_rss_two_cases.proc, c2f_rss_two_cases.out_json
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    samples = json.loads(out_json.read_text())
    assert [s["cases"] for s in samples] == [0, 1, 2]
    assert proc.stdout.count("[rss] after") == 2
    assert len(list(c2f_rss_two_cases.out.glob("long_*.nii.gz"))) == 2
    assert all(0 < s["rss_mb"] <= s["peak_mb"] for s in samples), samples


@pytest.mark.slow  # the trend over NUM_CASES cases (-m slow); test_predict_c2f_rss_samples_every_case by default
def test_predict_c2f_rss_does_not_grow_with_cases(c2f_rss_run):
    proc, out_json = c2f_rss_run.proc, c2f_rss_run.out_json
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    samples = json.loads(out_json.read_text())
    assert [s["cases"] for s in samples] == list(range(NUM_CASES + 1))
    assert proc.stdout.count("[rss] after") == NUM_CASES // 4
    assert len(list(c2f_rss_run.out.glob("long_*.nii.gz"))) == NUM_CASES
    after = samples[WARM_UP + 1:]  # samples[i] is taken after case i
    half = len(after) // 2
    first, second = after[:half], after[half:]
    floor_growth = min(s["rss_mb"] for s in second) - min(s["rss_mb"] for s in first)
    assert floor_growth <= RSS_FLOOR_TOLERANCE_MB, samples
    assert samples[-1]["peak_mb"] - samples[NUM_CASES // 2]["peak_mb"] <= PEAK_TOLERANCE_MB, samples
