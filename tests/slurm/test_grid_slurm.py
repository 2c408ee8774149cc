"""``nnunet-ext grid --launcher slurm`` on a real SLURM cluster (``bash tests/slurm/start_local_slurm.sh``: one node,
localhost, CPU only): the small grid as sbatch jobs with dependencies, one of them past its 2-minute limit,
signalled, checkpointed, requeued (``scontrol requeue``) and resumed with ``--c``; then the report.

Run: ``python -m pytest -q -n 0 -s -m slurm tests/slurm`` (a few minutes on 2 cores; the script's cred_expire=30 makes a
requeued job eligible again after 30 s)."""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from tests.helpers import SMALL_2D
from tests.integration.test_grid import _grid, _grid_env, _rows

pytestmark = pytest.mark.slurm


def _cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return p.returncode == 0 and any(s.strip() in ("idle", "mixed", "allocated") for s in p.stdout.splitlines())


def test_slurm_grid_with_time_limit_requeue(nnunet_dataset, tmp_path):
    if not _cluster_up():
        pytest.skip("no SLURM cluster (bash tests/slurm/start_local_slurm.sh)")
    ds = nnunet_dataset
    env = _grid_env(ds, tmp_path)
    long = "nnUNetTrainer_nomirror_200epochs_2iters_save1"  # past the 2-min limit even on idle cores: requeued, resumes
    trainers = ["nnUNetTrainerMoNet_nomirror_1epoch_2iters", "nnUNetTrainer_nomirror_1epoch_2iters", long]
    out = tmp_path / "grid"
    t0 = time.perf_counter()
    p = _grid(["-d", str(ds.dataset_id), "-c", "2d", "-tr", *[f"{t}:{SMALL_2D}" for t in trainers], "-f", "0",
               "-device", "cpu", "--gpus-per-job", "0", "--launcher", "slurm", "--time", "2", "--signal-delay", "20",
               "--cpus-per-job", "1", "--wait", "--out", str(out)], env, timeout=1500)
    elapsed = time.perf_counter() - t0
    print(p.stdout, p.stderr, f"\nSLURM grid, start to report: {elapsed:.0f} s", sep="\n")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "after afterany:" in p.stdout  # the report waits for the trainings through SLURM
    rows = _rows(out, env)
    assert all(r[0] == "COMPLETED" for r in rows.values()), rows
    name = f"{long}__{SMALL_2D}__2d__fold_0"
    rec = json.loads((out / "jobs" / name / "record.json").read_text())
    logs = "".join(f.read_text() for f in (out / "jobs" / name).glob("*_log.*"))
    runs = [ln for ln in logs.splitlines() if ln.startswith("running: ")]
    assert rec["attempt"] >= 2 and "Requeued job" in logs and rec["state"] == "COMPLETED", rec
    assert len(runs) >= 2 and runs[0].endswith("-device cpu") and runs[1].endswith(" --c"), runs  # resumed
    assert (tmp_path / "results" / ds.dataset_folder.name / f"{long}__{SMALL_2D}__2d" / "fold_0" /
            "checkpoint_final.pth").is_file()
    assert (out / "report" / "benchmark.json").is_file()
    state = json.loads((out / "grid.json").read_text())
    assert state["launcher"] == "slurm" and all(e["job_id"] for e in state["jobs"].values())
