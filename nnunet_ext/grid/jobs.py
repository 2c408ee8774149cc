"""What a grid job runs on its node: the submitit callables.

:class:`TrainJob` runs nnU-Net's own ``nnUNetv2_train`` (console script of this Python environment) with
``nnUNet_extTrainer`` set so that our trainers are found. It decides at start what the fold needs:
``checkpoint_final.pth`` -> nothing (done), ``checkpoint_latest.pth`` -> ``--c``, else a fresh start. It is a
``submitit.helpers.Checkpointable``: when the engine signals a time limit or pre-emption (SLURM ``--signal=USR2@T``;
submitit's local controller likewise) submitit calls :meth:`checkpoint`, which stops the training and returns the same
job, and requeues it (``scontrol requeue``, same job id); the requeued job resumes from nnU-Net's
``checkpoint_latest.pth`` (written every ``save_every`` epochs: nnU-Net 50, our ``_save<K>`` suffix K).

:class:`CommandJob` runs one ``nnunet-ext`` sub-command (``crossval-c2f``, ``benchmark``) in a subprocess, the very
command a user types on one machine.

Each job keeps a record (``record.json`` in its folder: state, start, end, attempts, exit status) that
``nnunet-ext grid --status`` reads beside the engine's state. The training subprocess ignores the engine's USR2
(the job, not nnU-Net, answers it) and dies with its job (Linux ``PR_SET_PDEATHSIG``).
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import submitit

RECORD = "record.json"


def read_record(folder) -> dict:
    try:
        return json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return {}


def _update_record(folder: Path, **changes) -> None:
    rec = read_record(folder)
    rec.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{RECORD}.{os.getpid()}"
    tmp.write_text(json.dumps(rec, indent=2))
    os.replace(tmp, folder / RECORD)


def _child_setup() -> None:  # runs in the child between fork and exec
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class _Job(submitit.helpers.Checkpointable):
    """A command in a subprocess, with its record; subclasses give the command."""

    def __init__(self, name: str, folder: str, env: Dict[str, str]):
        self.name, self.folder, self.env = name, folder, dict(env)
        self._proc: Optional[subprocess.Popen] = None

    def command(self) -> Optional[List[str]]:
        raise NotImplementedError

    def __call__(self) -> int:
        folder = Path(self.folder)
        job_id = _job_id()
        rec = read_record(folder)
        if rec.get("job_id") != job_id:
            rec = {}  # an earlier submission's record; a requeued job keeps its id (and its record)
        now = time.time()
        cmd = self.command()
        _update_record(folder, state="RUNNING", job_id=job_id, started=now, finished=None, returncode=None,
                       first_started=rec.get("first_started", now), attempt=int(rec.get("attempt", 0)) + 1,
                       command=cmd)
        if cmd is None:  # done meanwhile (e.g. a requeued training that had finished)
            _update_record(folder, state="COMPLETED", finished=time.time(), returncode=0)
            return 0
        print("running:", " ".join(cmd), flush=True)
        try:
            self._proc = subprocess.Popen(cmd, env={**os.environ, **self.env}, preexec_fn=_child_setup)
            rc = self._proc.wait()
        finally:
            self._stop()
        _update_record(folder, state="COMPLETED" if rc == 0 else "FAILED", finished=time.time(), returncode=rc)
        if rc != 0:
            raise RuntimeError(f"{self.name}: {cmd[0]} exited with status {rc}")
        return rc

    def _stop(self) -> None:
        """Terminate the command (30 s grace, then kill). Also called from submitit's signal handler while
        ``Popen.wait`` holds its lock, hence ``os.waitpid`` rather than ``Popen.wait``."""
        p, self._proc = self._proc, None
        if p is None or p.returncode is not None:
            return
        try:
            os.kill(p.pid, signal.SIGTERM)
            deadline = time.time() + 30
            while time.time() < deadline:
                if os.waitpid(p.pid, os.WNOHANG)[0]:
                    return
                time.sleep(0.2)
            os.kill(p.pid, signal.SIGKILL)
            os.waitpid(p.pid, 0)
        except (ProcessLookupError, ChildProcessError):  # ended and reaped meanwhile
            pass

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """Time limit or pre-emption: stop the command; the requeued job resumes from nnU-Net's checkpoint_latest."""
        self._stop()
        _update_record(Path(self.folder), state="REQUEUED", finished=time.time())
        return submitit.helpers.DelayedSubmission(self)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_proc"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._proc = None


class TrainJob(_Job):
    """``nnUNetv2_train ARGV [--c]`` for one fold (``fold_dir``: its checkpoints decide done / resume / fresh)."""

    def __init__(self, name: str, folder: str, env: Dict[str, str], argv: List[str], fold_dir: str,
                 executable: str):
        super().__init__(name, folder, env)
        self.argv, self.fold_dir, self.executable = list(argv), fold_dir, executable

    def command(self) -> Optional[List[str]]:
        fold = Path(self.fold_dir)
        if (fold / "checkpoint_final.pth").is_file():
            # stopped during nnU-Net's final validation (after checkpoint_final): nnU-Net's --val finishes it
            trained_here = getattr(self, "trained_here", False)
            return [self.executable, *self.argv, "--val"] if trained_here and not (
                fold / "validation" / "summary.json").is_file() else None
        self.trained_here = True
        resume = ["--c"] if (fold / "checkpoint_latest.pth").is_file() else []
        return [self.executable, *self.argv, *resume]


class CommandJob(_Job):
    """``nnunet-ext ARGV`` (this Python's ``-m nnunet_ext.cli``)."""

    def __init__(self, name: str, folder: str, env: Dict[str, str], argv: List[str], python: str = sys.executable):
        super().__init__(name, folder, env)
        self.argv, self.python = list(argv), python

    def command(self) -> List[str]:
        return [self.python, "-m", "nnunet_ext.cli", *self.argv]


def _job_id() -> Optional[str]:
    try:
        return submitit.JobEnvironment().job_id
    except RuntimeError:
        return None
