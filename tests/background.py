"""Session fixtures computed in background threads while the light tests run.

Most of the default run's time goes into a few fixtures that plan the tiny dataset and train and predict with the
stock nnU-Net commands (subprocesses: interpreter start-up, imports, nnU-Net's spawned export workers, tiny networks).
That work is mostly single-threaded, and run one after the other it left one of CI's two cores idle. A fixture
declared with :func:`job` is a session fixture whose value is computed in a worker thread (its subprocesses do the
work): as soon as collection shows a test that needs it, it is scheduled, and pytest meanwhile runs the tests that
need no job (modules that do are moved after those that do not, in the order their jobs are expected to end). A job
is submitted once its ``needs`` are done and a worker is free, the job on the longest chain of waiting jobs first.
A test that uses a job waits for it and gets its value, or fails with the job's own error: the same as a plain
session fixture, only earlier. ``NNUNET_EXT_TEST_JOBS`` sets the number of worker threads (default 2; 0 computes each
job in the foreground when a test first asks, like a plain fixture).

A job writes only below its own folder (``tmp``) and into result folders no other job writes (its own trainer names);
jobs that share a model name the job that trains it in ``needs``.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import pytest

WORKERS = int(os.environ.get("NNUNET_EXT_TEST_JOBS", "2"))


class _Job:
    def __init__(self, name: str, fn: Callable, needs: Sequence[str], cost: float):
        self.name, self.fn, self.needs, self.cost = name, fn, tuple(needs), cost


_jobs: Dict[str, _Job] = {}
_futures: Dict[str, cf.Future] = {}
_lock = threading.RLock()
_pool: Optional[cf.ThreadPoolExecutor] = None
_waiting: List[str] = []  # scheduled, not yet submitted (needs not done, or no free worker)
_running: set = set()
_prio: Dict[str, float] = {}
_root: Optional[Path] = None
_times: Dict[str, tuple] = {}  # job -> (start, end) in time.monotonic() seconds, for the --durations report


def job(*needs: str, cost: float = 10.0):
    """Decorator: ``@job("nnunet_dataset", cost=30)`` on ``def c2f_fine_3d(ds, tmp): ...`` defines the session
    fixture ``c2f_fine_3d``. The function gets the values of ``needs`` (other jobs) and a fresh folder
    ``tmp``; ``cost`` (seconds in a default run: ``--durations`` lists them) orders the start: critical path
    first (:func:`_priorities`)."""

    def deco(fn):
        name = fn.__name__
        if name in _jobs and _jobs[name].fn.__code__ is not fn.__code__:
            raise ValueError(f"two background jobs named {name}")
        _jobs[name] = _Job(name, fn, needs, cost)

        @pytest.fixture(scope="session", name=name)
        def fixture():
            return result(name)

        fixture.__doc__ = fn.__doc__
        return fixture

    return deco


def _closure(names) -> List[str]:
    """``names`` and everything they need, each after its needs."""
    out: List[str] = []

    def visit(n):
        if n in out:
            return
        for d in _jobs[n].needs:
            visit(d)
        out.append(n)

    for n in names:
        visit(n)
    return out


def _run(name: str):
    j = _jobs[name]
    args = [result(d) for d in j.needs]  # done: a job is submitted only once its needs are
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}_", dir=_root))
    t0 = time.monotonic()
    try:
        return j.fn(*args, tmp)
    finally:
        _times[name] = (t0, time.monotonic())


def _priorities(names) -> Dict[str, float]:
    """Critical-path priority of each job: its cost plus the largest priority among the jobs that need it (of
    ``names``): a job many others wait for starts first."""
    prio: Dict[str, float] = {}

    def visit(n):
        if n not in prio:
            prio[n] = _jobs[n].cost + max([visit(m) for m in names if n in _jobs[m].needs], default=0.0)
        return prio[n]

    for n in names:
        visit(n)
    return prio


def _pick(ready, prio):
    return max(ready, key=lambda n: (prio[n], n))


def _simulate(names) -> Dict[str, float]:
    """Expected end of each job (in cost units) under the dispatch rule of :func:`_dispatch` with ``WORKERS``
    workers (at least one): for ordering the test modules by when their jobs will be done."""
    prio, end, running, t = _priorities(names), {}, {}, 0.0
    waiting = list(names)
    while waiting or running:
        ready = [n for n in waiting if all(d in end for d in _jobs[n].needs)]
        while ready and len(running) < max(WORKERS, 1):
            n = _pick(ready, prio)
            ready.remove(n)
            waiting.remove(n)
            running[n] = t + _jobs[n].cost
        n = min(running, key=running.get)
        t = end[n] = running.pop(n)
    return end


def _dispatch() -> None:
    """Submit the waiting jobs whose needs are done, highest priority first, while a worker is free (a job never
    holds a worker while it waits for another)."""
    with _lock:
        while _pool is not None and _waiting and len(_running) < WORKERS:
            ready = [n for n in _waiting if all(_futures[d].done() for d in _jobs[n].needs)]
            if not ready:
                return
            n = _pick(ready, _prio)
            _waiting.remove(n)
            _running.add(n)
            _pool.submit(_work, n)


def _work(name: str) -> None:
    fut = _futures[name]
    try:
        fut.set_result(_run(name))
    except BaseException as e:  # pytest.fail raises a BaseException; the test that uses the job gets it
        fut.set_exception(e)
    finally:
        with _lock:
            _running.discard(name)
        _dispatch()


def _start(names) -> None:
    global _pool, _root, _prio
    with _lock:
        if _root is None:
            _root = Path(tempfile.mkdtemp(prefix="nnunet_ext_tests_"))
        if _pool is None and WORKERS > 0:
            _pool = cf.ThreadPoolExecutor(WORKERS, thread_name_prefix="test-job")
        new = [n for n in _closure(names) if n not in _futures]
        for n in new:
            _futures[n] = cf.Future()
            if _pool is None:  # foreground mode: computed on first use, needs first
                try:
                    _futures[n].set_result(_run(n))
                except BaseException as e:
                    _futures[n].set_exception(e)
            else:
                _waiting.append(n)
        if _pool is not None and new:
            _prio = _priorities(list(_waiting) + list(_running))
    _dispatch()


def result(name: str):
    """The value of job ``name`` (started now if it was not), waiting for it."""
    _start([name])
    return _futures[name].result()


def schedule(config, items) -> None:
    """Collection hook: start the jobs the collected tests need (by critical path: :func:`_priorities`) and move the
    modules that use a job after those that do not, ordered by when the last job each waits for is expected to end
    (:func:`_simulate`). Nothing is started for ``--collect-only``."""
    needed = {n for it in items for n in getattr(it, "fixturenames", ()) if n in _jobs}
    if not needed:
        return
    order = _closure(sorted(needed))
    end = _simulate(order)

    def module(it):
        return it.nodeid.split("::")[0]

    module_end: Dict[str, float] = {}  # when the last job a module waits for is expected to end; -1: none
    first_seen: Dict[str, int] = {}
    for i, it in enumerate(items):
        m = module(it)
        first_seen.setdefault(m, i)
        module_end[m] = max([module_end.get(m, -1.0)] + [end[n] for n in getattr(it, "fixturenames", ()) if n in end])
    items.sort(key=lambda it: (module_end[module(it)], first_seen[module(it)]))
    if not config.option.collectonly:
        _start(order)


def report(terminalreporter) -> None:
    """With ``--durations``: each job's wall time and when it started and ended (seconds after the first job
    started), so the jobs can be compared with the tests' durations pytest prints."""
    if not _times:
        return
    t_first = min(t0 for t0, _ in _times.values())
    terminalreporter.write_sep("=", "background job durations")
    for name, (t0, t1) in sorted(_times.items(), key=lambda kv: kv[1][0]):
        terminalreporter.write_line(f"{t1 - t0:8.1f}s  {name}  (started {t0 - t_first:.0f}s, ended {t1 - t_first:.0f}s)")


def shutdown() -> None:
    """Session end: drop the jobs not started, wait for the running ones, remove their folders."""
    global _pool, _root
    with _lock:
        pool, root, _pool, _root = _pool, _root, None, None
        _waiting.clear()
        _futures.clear()
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)
