"""``nnunet-ext grid`` without training: the jobs a grid decides (done / resume / todo, the benchmark's rows), the
bad inputs (one line, exit 2, nothing written), the job callables' command and checkpoint, state and status."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_ext.cli import main
from nnunet_ext.errors import UserError
from nnunet_ext.grid import launch
from nnunet_ext.grid.cli import parse_time
from nnunet_ext.grid.jobs import CommandJob, TrainJob, read_record
from nnunet_ext.grid.plan import build_grid

DS = "Dataset993_GridUnit"


@pytest.fixture
def fake_nnunet(tmp_path, monkeypatch):
    """nnU-Net folders with plans (2d, 3d_fullres; a second plans with 2d only) and a 3-fold split; no data."""
    raw, pre, res = (tmp_path / n for n in ("raw", "pre", "res"))
    for p in (raw / DS, pre / DS, res):
        p.mkdir(parents=True)
    (pre / DS / "nnUNetPlans.json").write_text(json.dumps({"configurations": {"2d": {}, "3d_fullres": {}}}))
    (pre / DS / "nnUNetPlans_small.json").write_text(json.dumps({"configurations": {"2d": {}}}))
    (pre / DS / "splits_final.json").write_text(json.dumps([{"train": [], "val": []}] * 3))
    for k, v in (("nnUNet_raw", raw), ("nnUNet_preprocessed", pre), ("nnUNet_results", res)):
        monkeypatch.setenv(k, str(v))
    return res / DS


def _fold(results: Path, name: str, fold: int, *files: str) -> Path:
    d = results / name / f"fold_{fold}"
    d.mkdir(parents=True)
    for f in files:
        (d / f).write_bytes(b"x")
    return d


@pytest.mark.parametrize("text,minutes", [("90", 90), ("1:30", 2), ("02:00:00", 120), ("1-00:00:00", 1440),
                                          ("2-3", 3060), ("0:20", 1)])
def test_parse_time(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["abc", "1:2:3:4", "0", "-5"])
def test_parse_time_bad(text):
    with pytest.raises(UserError, match="--time"):
        parse_time(text)


def test_jobs_done_resume_todo_and_report_rows(fake_nnunet, tmp_path):
    res = fake_nnunet
    _fold(res, "nnUNetTrainer__nnUNetPlans__2d", 0, "checkpoint_final.pth", "checkpoint_latest.pth")
    _fold(res, "nnUNetTrainer__nnUNetPlans__2d", 1, "checkpoint_latest.pth")
    grid = build_grid("993", ["2d"], ["nnUNetTrainerMoNet:nnUNetPlans_small", "nnUNetTrainer"], [], ["0", "1", "2"],
                      tmp_path / "out", device="cpu", gpus_per_job=2)
    status = {j.name: j.status for j in grid.jobs}
    assert status == {"nnUNetTrainerMoNet__nnUNetPlans_small__2d__fold_0": "todo",
                      "nnUNetTrainerMoNet__nnUNetPlans_small__2d__fold_1": "todo",
                      "nnUNetTrainerMoNet__nnUNetPlans_small__2d__fold_2": "todo",
                      "nnUNetTrainer__nnUNetPlans__2d__fold_0": "done",
                      "nnUNetTrainer__nnUNetPlans__2d__fold_1": "resume",
                      "nnUNetTrainer__nnUNetPlans__2d__fold_2": "todo", "benchmark": "todo"}
    train = grid.job("nnUNetTrainerMoNet__nnUNetPlans_small__2d__fold_2")
    assert train.argv == [DS, "2d", "2", "-tr", "nnUNetTrainerMoNet", "-p", "nnUNetPlans_small", "-device", "cpu",
                          "-num_gpus", "2"]
    bench = grid.job("benchmark")
    assert bench.after == "afterany" and len(bench.deps) == 6
    a = bench.argv
    # the stock row is the reference: its plans and configuration are the benchmark's, the other row a folder
    assert a[a.index("-p") + 1] == "nnUNetPlans" and a[a.index("-c") + 1] == "2d"
    rows = a[a.index("-tr") + 1:a.index("--reference")]
    assert rows == [f"nnUNetTrainerMoNet__nnUNetPlans_small__2d={res / 'nnUNetTrainerMoNet__nnUNetPlans_small__2d'}",
                    "nnUNetTrainer"]
    assert a[a.index("--reference") + 1] == "nnUNetTrainer" and a[a.index("--folds") + 1:][:3] == ["0", "1", "2"]
    assert a[-2:] == ["--out", str(tmp_path / "out" / "report")]
    assert not (tmp_path / "out").exists()


def test_c2f_pair_jobs_and_done_report(fake_nnunet, tmp_path):
    res = fake_nnunet
    for tr in ("nnUNetTrainerResDSN", "nnUNetTrainerResDSNFine"):
        _fold(res, f"{tr}__nnUNetPlans__3d_fullres", 0, "checkpoint_final.pth")
    pair = res / "C2F__nnUNetTrainerResDSN__3d_fullres__nnUNetTrainerResDSNFine__3d_fullres"
    grid = build_grid("993", ["3d_fullres"], [], [["nnUNetTrainerResDSN:3d_fullres",
                                                   "nnUNetTrainerResDSNFine:3d_fullres"]], ["0"], tmp_path / "o")
    c2f = grid.job(pair.name)
    assert c2f.status == "todo" and c2f.after == "afterok" and len(c2f.deps) == 2
    assert c2f.argv[:2] == ["crossval-c2f", "-d"] and "--coarse" in c2f.argv
    assert f"{pair.name}={pair}" in grid.job("benchmark").argv
    (pair / "fold_0" / "validation").mkdir(parents=True)
    (pair / "fold_0" / "validation" / "summary.json").write_text("{}")
    (tmp_path / "o" / "report").mkdir(parents=True)
    (tmp_path / "o" / "report" / "benchmark.json").write_text("{}")
    grid = build_grid("993", ["3d_fullres"], [], [["nnUNetTrainerResDSN:3d_fullres",
                                                   "nnUNetTrainerResDSNFine:3d_fullres"]], ["0"], tmp_path / "o")
    assert {j.status for j in grid.jobs} == {"done"}  # nothing to submit: the report stays as it is


@pytest.mark.parametrize("argv,message", [
    (["-tr", "nnUNetTrainerNope"], "unknown trainer 'nnUNetTrainerNope'"),
    (["-tr", "nnUNetTrainer:nnUNetPlansNope"], "nnUNetPlansNope.json do not exist"),
    (["-tr", "nnUNetTrainer:nnUNetPlans_small", "-c", "3d_fullres"], "configuration '3d_fullres' does not exist"),
    (["-tr", "nnUNetTrainer", "-f", "3"], "-f 3: fold outside the split"),
    (["-tr", "nnUNetTrainer", "-f", "all"], "-f 'all'"),
    (["-tr", "nnUNetTrainer", "--reference", "stock"], "--reference 'stock' is not a row"),
    (["--c2f", "nnUNetTrainerResDSN", "nnUNetTrainerResDSNFine:3d_fullres"], "expected TRAINER:CONFIGURATION"),
    ([], "nothing to run"),
])
def test_bad_input_one_line_exit_2_nothing_written(fake_nnunet, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    conf = ([] if "-c" in argv else ["-c", "2d"]) + ([] if "-f" in argv else ["-f", "0"])
    assert main(["grid", "-d", "993", *conf, *argv, "--out", str(out), "-device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_slurm_without_sbatch(fake_nnunet, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "out"
    assert main(["grid", "-d", "993", "-c", "2d", "-tr", "nnUNetTrainer", "--launcher", "slurm", "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sbatch is not on PATH" in err
    assert not out.exists()


def test_out_below_a_regular_file(fake_nnunet, tmp_path, capsys):
    """An --out that cannot be created (below a regular file: root ignores permission bits) is refused first."""
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "grid"
    assert main(["grid", "-d", "993", "-c", "2d", "-f", "0", "-tr", "nnUNetTrainer", "--out", str(out),
                 "-device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "file") in err, err
    assert (tmp_path / "file").read_text() == "x"


def test_out_with_another_grids_state(fake_nnunet, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["grid", "-d", "993", "-c", "2d", "-f", "0", "--out", str(out), "-device", "cpu", "--dry-run"]
    grid = build_grid("993", ["2d"], ["nnUNetTrainer"], [], ["0"], out, device="cpu")
    launch.save_state(out, {"arguments": grid.arguments, "jobs": {}})
    before = (out / launch.STATE).read_bytes()
    assert main([*base, "-tr", "nnUNetTrainer"]) == 0  # the same grid: accepted
    assert main([*base, "-tr", "nnUNetTrainer", "nnUNetTrainerMoNet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds another grid's state" in err[0] and "trainers" in err[0]
    assert (out / launch.STATE).read_bytes() == before and sorted(p.name for p in out.iterdir()) == [launch.STATE]
    assert main([*base, "-tr", "nnUNetTrainer", "nnUNetTrainerMoNet", "--force"]) == 0


def test_train_job_command_final_latest_val(tmp_path):
    fold = tmp_path / "fold_0"
    fold.mkdir()
    job = TrainJob("j", str(tmp_path / "job"), {}, ["D", "2d", "0"], str(fold), "nnUNetv2_train")
    assert job.command() == ["nnUNetv2_train", "D", "2d", "0"]
    (fold / "checkpoint_latest.pth").write_bytes(b"x")
    assert job.command()[-1] == "--c"
    (fold / "checkpoint_final.pth").write_bytes(b"x")
    assert job.command() == ["nnUNetv2_train", "D", "2d", "0", "--val"]  # stopped in its final validation
    assert TrainJob("j", "f", {}, ["D"], str(fold), "x").command() is None  # trained elsewhere: done
    (fold / "validation").mkdir()
    (fold / "validation" / "summary.json").write_text("{}")
    assert job.command() is None


def test_checkpoint_stops_the_command_and_requeues_the_same_job(tmp_path):
    job = CommandJob("j", str(tmp_path / "job"), {"nnUNet_x": "1"}, ["env"])
    job._proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    delayed = job.checkpoint()
    assert job._proc is None
    assert delayed.function is job
    again = pickle.loads(pickle.dumps(delayed.function))
    assert again.command() == [sys.executable, "-m", "nnunet_ext.cli", "env"] and again.env == {"nnUNet_x": "1"}
    assert read_record(tmp_path / "job")["state"] == "REQUEUED"


def test_command_job_records_failure(tmp_path):
    job = CommandJob("j", str(tmp_path / "job"), {}, ["grid", "--status", "--out", str(tmp_path / "none")])
    with pytest.raises(RuntimeError, match="exited with status 2"):
        job()
    rec = read_record(tmp_path / "job")
    assert rec["state"] == "FAILED" and rec["returncode"] == 2 and rec["attempt"] == 1


def test_status_rows_of_a_state(tmp_path, capsys):
    out = tmp_path / "out"
    launch.save_state(out, {"launcher": "local", "arguments": {}, "driver_pid": None, "jobs": {
        "a": {"kind": "train", "state": "DONE", "job_id": None, "log": None, "skipped": True},
        "b": {"kind": "train", "state": "RUNNING", "job_id": "123", "log": "b.log"},
        "c": {"kind": "benchmark", "state": "FAILED", "job_id": "124", "log": "c.log"}}})
    (out / "jobs" / "b").mkdir(parents=True)
    (out / "jobs" / "b" / "record.json").write_text(json.dumps(
        {"state": "COMPLETED", "job_id": "123", "first_started": 100.0, "finished": 3825.0}))
    assert main(["grid", "--status", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "state", "job_id", "elapsed", "log"]
    assert [ln.split() for ln in lines[1:]] == [["a", "DONE", "-", "-", "-"],
                                                ["b", "COMPLETED", "123", "1:02:05", "b.log"],
                                                ["c", "FAILED", "124", "-", "c.log"]]
    assert [r["name"] for r in launch.failures(launch.status_rows(out))] == ["c"]
    assert main(["grid", "--status", "--out", str(tmp_path / "nothing")]) == 2


def test_default_split_written_once_by_nnunets_rule(fake_nnunet, tmp_path):
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    from nnunet_ext.grid.plan import write_default_split

    pre = Path(__import__("os").environ["nnUNet_preprocessed"]) / DS
    (pre / "splits_final.json").unlink()
    data = pre / "nnUNetPlans_2d"
    data.mkdir()
    cases = [f"case_{i:03d}" for i in (4, 0, 3, 1, 2, 5)]
    for c in cases:
        (data / f"{c}.npz").write_bytes(b"")
        (data / f"{c}.pkl").write_bytes(b"")
    grid = build_grid("993", ["2d"], ["nnUNetTrainer"], [], ["0", "4"], tmp_path / "out")
    assert write_default_split(grid) == pre / "splits_final.json"
    splits = json.loads((pre / "splits_final.json").read_text())
    assert splits == generate_crossval_split(sorted(cases), seed=12345, n_splits=5)
    assert sorted(c for s in splits for c in s["val"]) == sorted(cases)
    assert write_default_split(grid) is None  # exists: left alone


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    """``sbatch`` that accepts every script (job ids 101, 102, ...) and logs its calls; ``squeue``/``sacct`` that know
    no job. The scripts stay where submitit puts them (``<job folder>/<job id>_submission.sh``)."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "sbatch_calls"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n"
                                    f"echo \"Submitted batch job $((100 + $(wc -l < {calls})))\"\n")
    for name in ("squeue", "sacct"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    return calls


def _gpu_lines(out: Path) -> dict:
    """{job: its sbatch script's GPU options (``#SBATCH --gpus...``, ``--gres...``)}."""
    scripts = {p.parent.name: p.read_text() for p in (out / "jobs").glob("*/*_submission.sh")}
    return {name: [ln for ln in text.splitlines() if ln.startswith("#SBATCH") and
                   any(w in ln.split("=")[0].lower() for w in ("gpu", "gres"))] for name, text in scripts.items()}


@pytest.mark.parametrize("device,gpus,train,c2f", [("cuda", "2", 2, 1), ("cuda", "1", 1, 1), ("cuda", "0", 0, 0),
                                                   ("cpu", "1", 0, 0), ("cpu", "0", 0, 0), ("mps", "1", 0, 0)])
def test_slurm_gpus_only_for_cuda_and_never_for_the_report(fake_nnunet, fake_sbatch, tmp_path, device, gpus, train,
                                                           c2f):
    out = tmp_path / "out"
    assert main(["grid", "-d", "993", "-c", "3d_fullres", "-f", "0", "-tr", "nnUNetTrainer", "--c2f",
                 "nnUNetTrainerResDSN:3d_fullres", "nnUNetTrainerResDSNFine:3d_fullres", "-device", device,
                 "--gpus-per-job", gpus, "--launcher", "slurm", "--out", str(out)]) == 0
    lines = _gpu_lines(out)
    pair = "C2F__nnUNetTrainerResDSN__3d_fullres__nnUNetTrainerResDSNFine__3d_fullres"
    trains = [n for n in lines if n.endswith("__fold_0")]
    assert len(trains) == 3 and sorted(lines) == sorted([*trains, pair, "benchmark"])
    assert len(fake_sbatch.read_text().splitlines()) == 5
    for name in trains:
        assert lines[name] == ([f"#SBATCH --gpus-per-node={train}"] if train else []), name
    assert lines[pair] == ([f"#SBATCH --gpus-per-node={c2f}"] if c2f else [])
    assert lines["benchmark"] == []


def test_several_gpus_without_cuda_refused_before_anything(fake_nnunet, fake_sbatch, tmp_path, capsys):
    out = tmp_path / "out"
    for launcher, dry in (("slurm", []), ("local", []), ("slurm", ["--dry-run"])):
        assert main(["grid", "-d", "993", "-c", "2d", "-f", "0", "-tr", "nnUNetTrainer", "-device", "cpu",
                     "--gpus-per-job", "2", "--launcher", launcher, "--out", str(out), *dry]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--gpus-per-job 2 with -device cpu" in err[0], err
        assert not out.exists() and not fake_sbatch.exists()
