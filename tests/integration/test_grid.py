"""``nnunet-ext grid`` with the local launcher: real submitit jobs running nnU-Net's ``nnUNetv2_train`` and
``nnunet-ext benchmark`` on the synthetic dataset (2d, small plans, 1-epoch schedules, CPU).

Default run: a fold trained already (conftest's MoNet 2d) is skipped, stock trains, a trainer that raises in its
first epoch fails: its row is failed, the others finish, the report is written, exit status 1 with one line naming
the job and its log; the same command then plans only what is missing. Slow: 2 trainers x 2 folds + stock, stopped
half-way and run again (only the unfinished jobs run; the report is benchmark's own), and a time-limit requeue."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import SMALL_2D

FAILING = '''from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerGridFails(nnUNetTrainer):
    def on_train_epoch_start(self):
        raise RuntimeError("nnUNetTrainerGridFails raises in its first epoch")
'''


def _grid_env(ds, tmp: Path, failing: bool = False) -> dict:
    """The dataset's environment with results of our own (models of other tests linked in on demand) and, with
    ``failing``, a folder with a trainer that raises, registered through nnUNet_extTrainer."""
    env = {**ds.env, "nnUNet_results": str(tmp / "results")}
    (tmp / "results" / ds.dataset_folder.name).mkdir(parents=True, exist_ok=True)
    if failing:
        (tmp / "trainers").mkdir(exist_ok=True)
        (tmp / "trainers" / "grid_fails.py").write_text(FAILING)
        env["nnUNet_extTrainer"] = os.pathsep.join([ds.env["nnUNet_extTrainer"], str(tmp / "trainers")])
    return env


def _grid(argv, env, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnunet_ext.cli", "grid", *argv], env=env, capture_output=True,
                          text=True, timeout=kw.pop("timeout", 900), **kw)


def _rows(out: Path, env) -> dict:
    p = _grid(["--status", "--out", str(out)], env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["name", "state", "job_id", "elapsed", "log"]
    return {ln.split()[0]: ln.split()[1:] for ln in lines[1:]}


@pytest.mark.xdist_group("monet_2d")
def test_local_grid_failing_job_and_resume(nnunet_dataset, monet_2d_run, tmp_path):
    ds = nnunet_dataset
    env = _grid_env(ds, tmp_path, failing=True)
    monet = monet_2d_run[0].parent  # nnUNetTrainerMoNet_1epoch_4iters__nnUNetPlans__2d, fold 0 trained
    (tmp_path / "results" / ds.dataset_folder.name / monet.name).symlink_to(monet)
    stock, fails = "nnUNetTrainer_nomirror_1epoch_3iters", "nnUNetTrainerGridFails"
    out = tmp_path / "grid"
    argv = ["-d", str(ds.dataset_id), "-c", "2d", "-tr", "nnUNetTrainerMoNet_1epoch_4iters", f"{stock}:{SMALL_2D}",
            f"{fails}:{SMALL_2D}", "-f", "0", "-device", "cpu", "--out", str(out)]
    p = _grid(argv, env)
    assert p.returncode == 1, p.stdout + p.stderr
    err = p.stderr.strip().splitlines()
    fail_job = f"{fails}__{SMALL_2D}__2d__fold_0"
    assert len(err) == 1 and fail_job in err[0] and "FAILED" in err[0], p.stderr
    log = Path(err[0].split("(log ")[1].rstrip(")"))
    assert log.is_file() and "nnUNetTrainerGridFails raises in its first epoch" in \
        log.read_text() + log.with_suffix(".err").read_text()
    rows = _rows(out, env)
    assert rows[f"{monet.name}__fold_0"][:2] == ["DONE", "-"]  # trained before: not submitted
    assert rows[f"{stock}__{SMALL_2D}__2d__fold_0"][0] == "COMPLETED"
    assert rows[fail_job][0] == "FAILED" and rows["benchmark"][0] == "COMPLETED"
    # the report is benchmark's own, with the failed trainer's fold missing
    bench = json.loads((out / "report" / "benchmark.json").read_text())
    text = json.dumps(bench)
    assert stock in text and "nnUNetTrainerMoNet_1epoch_4iters" in text
    md = (out / "report" / "benchmark.md").read_text()
    assert "nnunet-ext benchmark --skip-models --cv" in md and f"--reference {stock}" in md
    assert any(fails in line and "0" in line.split("|")[-2] for line in md.splitlines() if line.startswith("|"))
    # the same command again: only the failed job (and the report after it) would run
    p = _grid([*argv, "--dry-run"], env)
    assert p.returncode == 0, p.stderr
    plan = {ln.split(":")[0].strip(): ln.split(":")[1].split()[0] for ln in p.stdout.splitlines()[1:]}
    assert plan == {f"{monet.name}__fold_0": "done", f"{stock}__{SMALL_2D}__2d__fold_0": "done", fail_job: "todo",
                    "benchmark": "todo"}
    # another grid in the same --out: refused, nothing submitted
    before = (out / "grid.json").read_bytes()
    p = _grid([*argv[:-2], "-f", "0", "1", "--out", str(out)], env)
    assert p.returncode == 2 and "holds another grid's state" in p.stderr and len(p.stderr.splitlines()) == 1
    assert (out / "grid.json").read_bytes() == before


@pytest.mark.slow
def test_local_grid_two_trainers_two_folds_stopped_and_resumed(nnunet_dataset, tmp_path):
    ds = nnunet_dataset
    env = _grid_env(ds, tmp_path)
    trainers = ["nnUNetTrainerMoNet_nomirror_1epoch_2iters", "nnUNetTrainerDLKUNetS_nomirror_1epoch_2iters",
                "nnUNetTrainer_nomirror_1epoch_2iters"]
    out = tmp_path / "grid"
    argv = ["-d", str(ds.dataset_id), "-c", "2d", "-tr", *[f"{t}:{SMALL_2D}" for t in trainers], "-f", "0", "1",
            "-device", "cpu", "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nnunet_ext.cli", "grid", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = tmp_path / "results" / ds.dataset_folder.name
    finals = lambda: sorted(results.glob("*/fold_*/checkpoint_final.pth"))  # noqa: E731
    while len(finals()) < 2 and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)  # stop the grid half-way
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "interrupted" in stderr, stdout + stderr
    done_first = {p: p.stat().st_mtime_ns for p in finals()}
    assert 2 <= len(done_first) < 6
    p = _grid(argv, env)
    assert p.returncode == 0, p.stdout + p.stderr
    started = [ln.split(":")[0].strip() for ln in p.stdout.splitlines() if ": started" in ln]
    assert len(started) == 6 - len(done_first) + 1  # the unfinished trainings and the report
    assert all(f.stat().st_mtime_ns == m for f, m in done_first.items())  # finished folds were not retrained
    assert len(finals()) == 6
    # the report is the one benchmark writes when called by hand with the same arguments
    cmd = json.loads((out / "jobs" / "benchmark" / "record.json").read_text())["command"]
    by_hand = tmp_path / "by_hand"
    q = subprocess.run([*cmd[:-1], str(by_hand)], env=env, capture_output=True, text=True, timeout=600)
    assert q.returncode == 0, q.stderr
    for f in ("per_case.csv", "benchmark.csv"):
        assert (by_hand / f).read_text() == (out / "report" / f).read_text()
    # everything done: the same command submits nothing and leaves the report as it is
    report = (out / "report" / "benchmark.json").stat().st_mtime_ns
    p = _grid(argv, env)
    assert p.returncode == 0 and ": started" not in p.stdout and "0 to run" in p.stdout, p.stdout
    assert (out / "report" / "benchmark.json").stat().st_mtime_ns == report
    print(f"grid of 6 trainings + report, stopped and resumed: {time.perf_counter() - t0:.0f} s")


@pytest.mark.slow
def test_local_time_limit_requeue_resumes(nnunet_dataset, tmp_path):
    """A job with a 2-minute limit is signalled 60 s before it (submitit's local controller), checkpointed and
    requeued; the requeued job resumes from checkpoint_latest (``_save1``) with ``--c`` and finishes (80 epochs:
    more than one attempt on an idle machine, within the controller's 6 attempts on a busy one)."""
    ds = nnunet_dataset
    env = _grid_env(ds, tmp_path)
    trainer = "nnUNetTrainer_nomirror_80epochs_2iters_save1"
    out = tmp_path / "grid"
    p = _grid(["-d", str(ds.dataset_id), "-c", "2d", "-tr", f"{trainer}:{SMALL_2D}", "-f", "0", "-device", "cpu",
               "--time", "2", "--signal-delay", "60", "--out", str(out)], env)
    assert p.returncode == 0, p.stdout + p.stderr
    name = f"{trainer}__{SMALL_2D}__2d__fold_0"
    rec = json.loads((out / "jobs" / name / "record.json").read_text())
    logs = "".join(f.read_text() for f in (out / "jobs" / name).glob("*_log.*"))
    runs = [ln for ln in logs.splitlines() if ln.startswith("running: ")]
    assert rec["attempt"] >= 2 and rec["state"] == "COMPLETED" and "Requeued job" in logs, rec
    assert len(runs) >= 2 and runs[0].endswith("-device cpu") and runs[1].endswith(" --c"), runs  # resumed
    assert (tmp_path / "results" / ds.dataset_folder.name / f"{trainer}__{SMALL_2D}__2d" / "fold_0" /
            "checkpoint_final.pth").is_file()
