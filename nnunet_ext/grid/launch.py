"""Submitting a grid with submitit, its state in ``--out``, ``--status`` and ``--cancel``.

``--out DIR`` holds ``grid.json`` (the grid's arguments, the launcher and, per job, its engine job id, state and log)
and ``jobs/<job name>/`` (submitit's folder of the job: pickles, ``<job id>_0_log.out/.err``, and the job's
``record.json``, :mod:`nnunet_ext.grid.jobs`).

* ``slurm``: every job is an ``sbatch`` job (``submitit.SlurmExecutor``); dependencies are SLURM's: a C2F pair's
  ``crossval-c2f`` ``afterok`` its trainings (``--kill-on-invalid-dep=yes``: cancelled if one fails), the benchmark
  ``afterany`` everything. Time limits: ``--signal=USR2@<signal-delay>``, then submitit's checkpoint and
  ``scontrol requeue``. ``nnunet-ext grid`` returns after submitting (``--wait``: waits, exit status as local).
* ``local``: submitit's ``LocalExecutor`` (a controller process per job, the same time-limit signal and requeue);
  submitit has no dependencies locally, so the command itself starts each job when its dependencies have ended (at
  most ``--max-parallel`` at once) and returns when the grid has ended. Interrupted (Ctrl-C, SIGTERM,
  ``--cancel``), it cancels its running jobs; the same command then resumes.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from nnunet_ext.errors import UserError
from nnunet_ext.grid.jobs import CommandJob, TrainJob, read_record
from nnunet_ext.grid.plan import Grid, GridJob

STATE = "grid.json"
FINAL = ("COMPLETED", "DONE", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
         "BOOT_FAIL", "DEADLINE")
FAILED = ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE")


# ------------------------------------------------------------------------------------------ state
def load_state(out) -> Optional[dict]:
    f = Path(out) / STATE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{f}: cannot read the grid's state ({e}); use another --out or --force") from None


def save_state(out, state: dict) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{STATE}.{os.getpid()}"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, out / STATE)


def check_state(out, arguments: dict, force: bool) -> Optional[dict]:
    """The state of the grid in ``out`` if it is this grid's; UserError if it is another grid's (unless ``force``)
    or if a local grid is still running there."""
    try:
        old = load_state(out)
    except UserError:
        if force:
            return None
        raise
    if old is None:
        return None
    if old.get("arguments") != arguments:
        if force:
            return None
        diff = sorted(k for k in {**arguments, **old.get("arguments", {})}
                      if old.get("arguments", {}).get(k) != arguments.get(k))
        raise UserError(f"--out {out} holds another grid's state ({Path(out) / STATE}: differs in "
                        f"{', '.join(diff)}); use another --out, or --force to replace it")
    pid = old.get("driver_pid")
    if pid and _alive(pid, "grid") and pid != os.getpid():
        raise UserError(f"--out {out}: this grid is running already (process {pid}); see --status, or --cancel")
    return old


def job_folder(out, name: str) -> Path:
    return Path(out) / "jobs" / name


def job_env() -> Dict[str, str]:
    """What a job needs of the submitting shell: nnU-Net's folders and settings, ours registered."""
    from nnunet_ext.lookup import ext_trainer_path_value

    env = {k: v for k, v in os.environ.items() if k.startswith("nnUNet_")}
    env["nnUNet_extTrainer"] = ext_trainer_path_value(os.environ.get("nnUNet_extTrainer"))
    return env


def make_callable(job: GridJob, out):
    folder = str(job_folder(out, job.name))
    if job.kind == "train":
        exe = Path(sys.executable).parent / "nnUNetv2_train"
        exe = str(exe) if exe.exists() else (shutil.which("nnUNetv2_train") or "nnUNetv2_train")
        return TrainJob(job.name, folder, job_env(), job.argv, job.fold_dir, exe)
    return CommandJob(job.name, folder, job_env(), job.argv)


# ------------------------------------------------------------------------------------------ submission
def new_state(grid: Grid, launcher: str, old: Optional[dict]) -> dict:
    jobs = {}
    for j in grid.jobs:
        prev = (old or {}).get("jobs", {}).get(j.name, {})
        if j.status == "done":
            jobs[j.name] = {**prev, "kind": j.kind, "state": "COMPLETED" if prev.get("job_id") else "DONE",
                            "skipped": True}
        else:
            jobs[j.name] = {"kind": j.kind, "state": "PENDING", "job_id": None, "log": None, "skipped": False,
                            "resume": j.status == "resume", "deps": j.deps}
    return {"version": 1, "arguments": grid.arguments, "launcher": launcher, "driver_pid": None, "jobs": jobs}


def job_gpus(kind: str, opts) -> int:
    """GPUs a job asks for: a training ``--gpus-per-job`` and a ``crossval-c2f`` at most one (one process), each
    only with ``-device cuda``; the report (``benchmark --skip-models``) none."""
    if opts.device != "cuda" or kind == "benchmark":
        return 0
    return opts.gpus_per_job if kind == "train" else min(opts.gpus_per_job, 1)


def _executor(launcher: str, folder: Path, opts, kind: str = "train"):
    import submitit

    gpus = job_gpus(kind, opts)
    if launcher == "local":
        ex = submitit.LocalExecutor(folder=str(folder), max_num_timeout=opts.max_requeues)
        ex.update_parameters(timeout_min=opts.time_min or 60 * 24 * 365, signal_delay_s=opts.signal_delay,
                             gpus_per_node=gpus)
        return ex
    ex = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=opts.max_requeues)
    params = dict(time=opts.time_min or 24 * 60, signal_delay_s=opts.signal_delay, nodes=1, ntasks_per_node=1,
                  additional_parameters=dict(opts.sbatch_args))
    for key, value in (("partition", opts.partition), ("account", opts.account), ("cpus_per_task", opts.cpus),
                       ("mem", opts.mem), ("gpus_per_node", gpus or None)):
        if value is not None:
            params[key] = value
    ex.update_parameters(**params)
    return ex


def _submit(job: GridJob, out, launcher: str, opts, entry: dict, dependency: Optional[str] = None):
    folder = job_folder(out, job.name)
    folder.mkdir(parents=True, exist_ok=True)
    ex = _executor(launcher, folder, opts, job.kind)
    if launcher == "slurm":
        extra = {"job_name": f"grid:{job.name}"[:120]}
        if dependency:
            extra["dependency"] = dependency
            if job.after == "afterok":
                ex.parameters.setdefault("additional_parameters", {})["kill_on_invalid_dep"] = "yes"
        ex.update_parameters(**extra)
    sjob = ex.submit(make_callable(job, out))
    entry.update(job_id=str(sjob.job_id), log=str(sjob.paths.stdout), state="SUBMITTED", submitted=time.time())
    return sjob


def submit_slurm(grid: Grid, out, opts, old: Optional[dict], log=print) -> dict:
    """Submit every job that is not done (dependencies: SLURM's); jobs of this grid still queued are kept."""
    state = new_state(grid, "slurm", old)
    queued = _active(_squeue())
    ids: Dict[str, str] = {}
    for j in grid.jobs:
        entry = state["jobs"][j.name]
        prev = (old or {}).get("jobs", {}).get(j.name, {})
        if j.status == "done":
            continue
        if prev.get("job_id") in queued:
            state["jobs"][j.name] = {**prev, "skipped": True}
            ids[j.name] = prev["job_id"]
            log(f"  {j.name}: still queued as job {prev['job_id']}")
            continue
        dep_ids = [ids[d] for d in j.deps if d in ids]
        dependency = f"{j.after}:{':'.join(dep_ids)}" if dep_ids else None
        try:
            _submit(j, out, "slurm", opts, entry, dependency)
        except Exception as e:  # submitit's FailedJobError: sbatch's own message
            save_state(out, state)
            lines = [ln for ln in str(e).splitlines() if ln.strip()]
            raise UserError(f"{j.name}: sbatch refused the job ({lines[-1] if lines else type(e).__name__}); "
                            f"jobs submitted so far are in {Path(out) / STATE}") from None
        ids[j.name] = entry["job_id"]
        save_state(out, state)
        log(f"  {j.name}: job {entry['job_id']}{' (resumes with --c)' if entry.get('resume') else ''}"
            f"{' after ' + dependency if dependency else ''}")
    save_state(out, state)
    return state


def run_local(grid: Grid, out, opts, old: Optional[dict], log=print) -> dict:
    """Run the jobs that are not done with submitit's local executor, each when its dependencies have ended."""
    state = new_state(grid, "local", old)
    state["driver_pid"] = os.getpid()
    jobs = {j.name: j for j in grid.jobs}
    running: Dict[str, object] = {}
    save_state(out, state)
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while True:
            for name, sjob in list(running.items()):
                if sjob.done():
                    entry = state["jobs"][name]
                    entry.update(state=_local_outcome(sjob), ended=time.time())
                    del running[name]
                    log(f"  {name}: {entry['state']} (log {entry['log']})")
            pending = [n for n, e in state["jobs"].items() if e["state"] == "PENDING"]
            if not pending and not running:
                break
            for name in pending:
                j = jobs[name]
                deps = [state["jobs"][d]["state"] for d in j.deps]
                if any(s not in FINAL for s in deps):
                    continue
                if j.after == "afterok" and any(s in FAILED for s in deps):
                    state["jobs"][name].update(state="CANCELLED", reason="a dependency failed")
                    log(f"  {name}: CANCELLED (a dependency failed)")
                    continue
                if len(running) >= opts.max_parallel:
                    break
                running[name] = _submit(j, out, "local", opts, state["jobs"][name])
                state["jobs"][name]["state"] = "RUNNING"
                log(f"  {name}: started (pid {state['jobs'][name]['job_id']}"
                    f"{', resumes with --c' if state['jobs'][name].get('resume') else ''})")
            save_state(out, state)
            time.sleep(0.5)
    except KeyboardInterrupt:
        for name, sjob in running.items():
            sjob.cancel()
        for name, sjob in running.items():
            try:
                sjob._process.wait(timeout=60)
            except (subprocess.TimeoutExpired, AttributeError):
                pass
            state["jobs"][name].update(state="CANCELLED", ended=time.time())
        for e in state["jobs"].values():
            if e["state"] == "PENDING":
                e["state"] = "NOT STARTED"
        state["interrupted"] = True
    finally:
        signal.signal(signal.SIGTERM, old_term)
        state["driver_pid"] = None
        save_state(out, state)
    return state


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _local_outcome(sjob) -> str:
    if not sjob.paths.result_pickle.exists():
        return "CANCELLED" if (sjob._process is not None and (sjob._process.returncode or 0) < 0) else "FAILED"
    try:
        sjob.result()
        return "COMPLETED"
    except Exception:  # the job's own error, pickled by submitit
        return "FAILED"


# ------------------------------------------------------------------------------------------ status, cancel, wait
def _squeue() -> Dict[str, tuple]:
    """{job id: (state, elapsed)} of the jobs SLURM knows (``squeue -t all``: queued, running, and ended within the
    cluster's MinJobAge); empty without squeue."""
    if shutil.which("squeue") is None:
        return {}
    try:
        p = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%T|%M"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    rows = (line.split("|") for line in p.stdout.splitlines() if line.count("|") == 2)
    return {r[0]: (r[1], r[2]) for r in rows}


def _active(queue: Dict[str, tuple]) -> set:
    return {jid for jid, (st, _) in queue.items() if st not in FINAL}


def _sacct(ids: List[str]) -> Dict[str, tuple]:
    if not ids or shutil.which("sacct") is None:
        return {}
    try:
        p = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobIDRaw,State,Elapsed", "-j", ",".join(ids)],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    rows = (line.split("|") for line in p.stdout.splitlines() if line.count("|") == 2)
    return {r[0]: (r[1].split()[0], r[2]) for r in rows}


def _alive(pid, what: str) -> bool:
    try:
        cmd = Path(f"/proc/{int(pid)}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return False
    return (what == "grid" and "grid" in cmd) or (what == "local" and "submitit.local._local" in cmd)


def _elapsed(rec: dict, ended: Optional[float] = None) -> str:
    """First start to the end (or now while running); ``ended``: when the engine ended a job that could not record
    it (cancelled, killed)."""
    start = rec.get("first_started")
    if not start:
        return "-"
    end = (ended or time.time()) if rec.get("state") == "RUNNING" else (rec.get("finished") or ended or time.time())
    s = int(max(0, end - start))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def status_rows(out) -> List[dict]:
    """One row per job: name, state, engine job id, elapsed, log."""
    state = load_state(out)
    if state is None:
        raise UserError(f"--out {out}: no grid there ({Path(out) / STATE} does not exist)")
    slurm = state.get("launcher") == "slurm"
    queue = _squeue() if slurm else {}
    ids = [e["job_id"] for e in state["jobs"].values() if e.get("job_id") and e["job_id"] not in queue]
    acct = _sacct(ids) if slurm else {}
    driver_alive = bool(state.get("driver_pid")) and _alive(state["driver_pid"], "grid")
    rows = []
    for name, e in state["jobs"].items():
        rec = read_record(job_folder(out, name))
        jid, st = e.get("job_id"), e.get("state", "?")
        if rec and jid and rec.get("job_id") not in (None, jid):
            rec = {}  # a record of an earlier submission
        elapsed = _elapsed(rec, e.get("ended"))
        if slurm and jid in queue:  # SLURM's elapsed time is the last run's: the record's spans the requeues
            st = queue[jid][0]
            elapsed = elapsed if rec.get("first_started") and st in FINAL else queue[jid][1]
        elif slurm and jid and not e.get("skipped"):
            st = rec.get("state") if rec.get("state") in ("COMPLETED", "FAILED") else acct.get(jid, ("ENDED",))[0]
        elif not slurm and st in ("RUNNING", "SUBMITTED", "PENDING") and not driver_alive:
            st = rec.get("state") if rec.get("state") in ("COMPLETED", "FAILED") else "CANCELLED"
        elif not slurm and st == "RUNNING" and rec.get("state") == "REQUEUED":
            st = "REQUEUED"
        rows.append({"name": name, "state": st, "job_id": jid or "-", "elapsed": elapsed,
                     "log": e.get("log") or "-"})
    return rows


def format_rows(rows: List[dict]) -> str:
    cols = ("name", "state", "job_id", "elapsed", "log")
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols[:-1]}
    lines = ["  ".join(c.ljust(width.get(c, 0)) for c in cols).rstrip()]
    lines += ["  ".join(str(r[c]).ljust(width.get(c, 0)) for c in cols).rstrip() for r in rows]
    return "\n".join(lines)


def failures(rows: List[dict]) -> List[dict]:
    return [r for r in rows if r["state"] in FAILED or r["state"] in ("ENDED", "NOT STARTED")]


def wait_slurm(out, poll_s: float = 10.0) -> List[dict]:
    """Poll until no job of the grid is queued or running; the final rows."""
    while True:
        state = load_state(out)
        ids = {e.get("job_id") for e in state["jobs"].values() if e.get("job_id") and not e.get("skipped")}
        ids |= {e.get("job_id") for e in state["jobs"].values() if e.get("skipped") and e.get("state") != "DONE"}
        if not ids & _active(_squeue()):
            return status_rows(out)
        time.sleep(poll_s)


def cancel(out, log=print) -> int:
    """Cancel the grid's queued and running jobs (SLURM: scancel; local: the running grid and its jobs)."""
    state = load_state(out)
    if state is None:
        raise UserError(f"--out {out}: no grid there ({Path(out) / STATE} does not exist)")
    n = 0
    if state.get("launcher") == "slurm":
        queue = _active(_squeue())
        ids = [e["job_id"] for e in state["jobs"].values() if e.get("job_id") in queue]
        if ids:
            subprocess.run(["scancel", *ids], check=False)
        n = len(ids)
    else:
        pid = state.get("driver_pid")
        if pid and _alive(pid, "grid"):
            os.kill(int(pid), signal.SIGTERM)  # the grid cancels its jobs and records it
            for _ in range(120):
                if not _alive(pid, "grid"):
                    break
                time.sleep(0.5)
        for e in state["jobs"].values():
            if e.get("state") == "RUNNING" and e.get("job_id") and _alive(e["job_id"], "local"):
                os.kill(int(e["job_id"]), signal.SIGINT)
                n += 1
        n = n or sum(e.get("state") == "RUNNING" for e in state["jobs"].values())
    log(f"cancelled {n} job(s) of the grid in {out}")
    return 0
