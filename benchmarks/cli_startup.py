"""Start-up time of ``nnunet-ext env`` against stock ``nnUNetv2_train -h``, measured in the same run.

``nnunet-ext env`` (and ``--version``, ``-h``) must import neither torch nor nnU-Net: a sub-command's module is
imported only when that sub-command runs (the command table ``COMMANDS`` in nnunet_ext/commands.py). Goal: env <
0.1x the wall time of ``nnUNetv2_train -h`` (docs/benchmarks.md). Each command runs ``--repeats`` times as a fresh
process (the console scripts of this Python's environment); the median wall time and the peak RSS (``ru_maxrss`` of
the child) are printed.

    python benchmarks/cli_startup.py [--repeats 3]

It is a benchmark, not a test: nothing is asserted. tests/integration/test_cli.py checks the imports themselves.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _exe(name: str) -> str:
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else name


def run(cmd, repeats: int):
    times, rss = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # child: exec the command, output discarded
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.execvp(cmd[0], cmd)
        _, status, usage = os.wait4(pid, 0)
        times.append(time.perf_counter() - t0)
        rss.append(usage.ru_maxrss / 1024)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(cmd)} failed")
    return statistics.median(times), max(rss)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    rows = [("nnunet-ext env", [_exe("nnunet-ext"), "env"]),
            ("nnunet-ext --version", [_exe("nnunet-ext"), "--version"]),
            ("nnunet-ext -h", [_exe("nnunet-ext"), "-h"]),
            ("nnUNetv2_train -h", [_exe("nnUNetv2_train"), "-h"])]
    res = {name: run(cmd, args.repeats) for name, cmd in rows}
    print(f"load average (1 min) after the runs: {os.getloadavg()[0]:.2f}; "
          f"median of {args.repeats} fresh processes each")
    print("| command | wall (s) | peak RSS (MiB) |")
    print("|---|--:|--:|")
    for name, (t, r) in res.items():
        print(f"| `{name}` | {t:.3f} | {r:.0f} |")
    ratio = res["nnunet-ext env"][0] / res["nnUNetv2_train -h"][0]
    print(f"\nnnunet-ext env / nnUNetv2_train -h wall time: {ratio:.3f} (goal < 0.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
