"""``nnunet-ext grid``: the command line (arguments, checks before anything is submitted, status, cancel)."""
from __future__ import annotations

import argparse
import re
import shutil
import time
from pathlib import Path

from nnunet_ext.errors import UserError

DEFAULT_FOLDS = ["0", "1", "2", "3", "4"]


def parse_time(value) -> int:
    """SLURM's ``--time`` (minutes, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) in whole minutes (at least 1)."""
    v = str(value).strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", v)
    if not m:
        raise UserError(f"--time {value!r}: expected minutes, HH:MM:SS or D-HH:MM:SS")
    d, a, b, c = (int(x) if x else None for x in m.groups())
    if d is None and b is None:
        secs = a * 60
    elif d is None and c is None:
        secs = a * 60 + b                   # MM:SS
    elif d is None:
        secs = a * 3600 + b * 60 + c        # HH:MM:SS
    else:
        secs = d * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    if secs <= 0:
        raise UserError(f"--time {value!r}: must be positive")
    return max(1, -(-secs // 60))


def register_cli(subparsers, name: str, help: str) -> None:
    s = subparsers.add_parser(
        name, help=help, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train trainers x configurations x folds with nnU-Net's nnUNetv2_train, score C2F pairs with "
                    "crossval-c2f, then write the report of 'nnunet-ext benchmark --skip-models --cv' into "
                    "--out/report; as SLURM jobs (submitit; dependencies afterok/afterany; a job that reaches its "
                    "time limit is requeued and resumes with --c) or locally. Running the same command again "
                    "submits only what is missing (checkpoint_final.pth: done; checkpoint_latest.pth: --c).\n\n"
                    "examples:\n"
                    "  nnunet-ext grid -d 7 -c 3d_fullres -tr nnUNetTrainerDMCNet:nnUNetPlans_dmcnet_3d "
                    "nnUNetTrainer --launcher slurm --partition gpu --time 24:00:00 --out grid7\n"
                    "  nnunet-ext grid --status --out grid7\n"
                    "  nnunet-ext grid --cancel --out grid7")
    s.add_argument("-d", dest="dataset", default=None, help="dataset name or id")
    s.add_argument("-c", dest="configurations", nargs="+", default=None, metavar="CONFIG",
                   help="configurations, e.g. 3d_fullres 2d")
    s.add_argument("-tr", dest="trainers", nargs="+", default=[], metavar="TRAINER[:PLANS]",
                   help="trainers (plans identifier after a colon, default nnUNetPlans)")
    s.add_argument("--c2f", nargs=2, action="append", default=[], metavar=("COARSE:CONFIG", "FINE:CONFIG"),
                   help="a coarse-to-fine pair (TRAINER:CONFIG[:PLANS] each): its trainings, then crossval-c2f "
                        "(repeatable)")
    s.add_argument("-f", dest="folds", nargs="+", default=DEFAULT_FOLDS, metavar="FOLD",
                   help="folds (default 0 1 2 3 4)")
    s.add_argument("-device", "--device", dest="device", choices=("cuda", "cpu", "mps"), default="cuda",
                   help="nnUNetv2_train's -device (default cuda)")
    s.add_argument("--reference", default=None,
                   help="the report's reference row (default: stock nnUNetTrainer[_...], else the first row)")
    s.add_argument("--out", required=True, help="the grid's folder: state (grid.json), job logs, report/")
    s.add_argument("--force", action="store_true", help="replace the state of another grid in --out")
    s.add_argument("--dry-run", action="store_true", help="check everything and list the jobs; submit nothing")
    s.add_argument("--status", action="store_true", help="one row per job: name, state, job id, elapsed, log")
    s.add_argument("--cancel", action="store_true", help="cancel the grid's queued and running jobs")
    g = s.add_argument_group("launcher")
    g.add_argument("--launcher", choices=("local", "slurm"), default="local", help="default local")
    g.add_argument("--gpus-per-job", type=int, default=1,
                   help="GPUs per training job with -device cuda (default 1; > 1: nnUNetv2_train -num_gpus N, DDP on "
                        "one node); crossval-c2f gets at most 1, the report none; -device cpu/mps: none")
    g.add_argument("--time", default=None,
                   help="time limit per job (slurm default 24:00:00; local default none); before it ends the job "
                        "is checkpointed and requeued")
    g.add_argument("--signal-delay", type=int, default=120,
                   help="seconds before the time limit at which the job is signalled (default 120)")
    g.add_argument("--max-requeues", type=int, default=10, help="time-limit requeues per job (default 10)")
    g.add_argument("--max-parallel", type=int, default=1, help="local: jobs at once (default 1)")
    g.add_argument("--partition", default=None, help="slurm partition")
    g.add_argument("--account", default=None, help="slurm account")
    g.add_argument("--cpus-per-job", dest="cpus", type=int, default=None, help="slurm --cpus-per-task")
    g.add_argument("--mem", default=None, help="slurm --mem, e.g. 64G")
    g.add_argument("--sbatch", dest="sbatch_args", action="append", default=[], metavar="KEY=VALUE",
                   help="extra sbatch argument, e.g. --sbatch qos=high --sbatch constraint=a100 (repeatable)")
    g.add_argument("--wait", action="store_true", help="slurm: wait for the grid to end (exit status as local)")
    s.set_defaults(func=cmd_grid)


def _options(args) -> None:
    args.time_min = parse_time(args.time) if args.time else None
    pairs = []
    for item in args.sbatch_args:
        key, eq, value = item.lstrip("-").partition("=")
        if not key:
            raise UserError(f"--sbatch {item!r}: expected KEY=VALUE or KEY")
        pairs.append((key.replace("-", "_"), value if eq else True))
    args.sbatch_args = pairs
    for flag, v, lo in (("--max-parallel", args.max_parallel, 1), ("--max-requeues", args.max_requeues, 0),
                        ("--signal-delay", args.signal_delay, 1)):
        if v < lo:
            raise UserError(f"{flag} {v}: must be >= {lo}")
    if args.gpus_per_job > 1 and args.device != "cuda":
        raise UserError(f"--gpus-per-job {args.gpus_per_job} with -device {args.device}: more than one GPU per job "
                        "(nnUNetv2_train -num_gpus, DDP) needs -device cuda")
    if args.launcher == "slurm" and shutil.which("sbatch") is None:
        raise UserError("--launcher slurm: sbatch is not on PATH (run on a SLURM login node, or --launcher local)")


def cmd_grid(args) -> int:
    from nnunet_ext.grid import launch

    if args.status or args.cancel:
        if args.cancel:
            return launch.cancel(args.out)
        print(launch.format_rows(launch.status_rows(args.out)))
        return 0
    if not args.dataset or not args.configurations:
        raise UserError("-d and -c are needed (or --status / --cancel with --out)")
    _options(args)
    from nnunet_ext.grid.plan import build_grid
    from nnunet_ext.lookup import register_ext_trainers

    register_ext_trainers()
    grid = build_grid(args.dataset, args.configurations, args.trainers, args.c2f, args.folds, args.out,
                      device=args.device, gpus_per_job=args.gpus_per_job, reference=args.reference)
    old = launch.check_state(args.out, grid.arguments, args.force)
    todo = [j for j in grid.jobs if j.status != "done"]
    print(f"grid {grid.dataset}: {len(grid.jobs)} jobs, {len(grid.jobs) - len(todo)} done already, "
          f"{len(todo)} to run ({args.launcher})", flush=True)
    if args.dry_run:
        for j in grid.jobs:
            prog = "nnUNetv2_train" if j.kind == "train" else "nnunet-ext"
            print(f"  {j.name}: {j.status}  {prog} {' '.join(j.argv)}{' --c' if j.status == 'resume' else ''}")
        return 0
    from nnunet_ext.grid.plan import write_default_split

    written = write_default_split(grid)
    if written:
        print(f"wrote nnU-Net's default 5-fold split {written} (before the folds start together)")
    t0 = time.perf_counter()
    if args.launcher == "slurm":
        launch.submit_slurm(grid, args.out, args, old, log=lambda m: print(m, flush=True))
        if not args.wait:
            print(f"submitted; nnunet-ext grid --status --out {args.out}")
            return 0
        rows = launch.wait_slurm(args.out)
    else:
        state = launch.run_local(grid, args.out, args, old, log=lambda m: print(m, flush=True))
        rows = launch.status_rows(args.out)
        if state.get("interrupted"):
            print(launch.format_rows(rows))
            return _fail_line("interrupted: the running jobs were cancelled; the same command resumes the grid "
                              f"({Path(args.out) / launch.STATE})")
    print(launch.format_rows(rows))
    failed = launch.failures(rows)
    print(f"grid ended in {time.perf_counter() - t0:.0f} s; report: {grid.report}")
    if failed:
        return _fail_line(f"{len(failed)} job(s) did not complete: " + "; ".join(
            f"{r['name']} {r['state']} (log {r['log']})" for r in failed))
    return 0


def _fail_line(message: str) -> int:
    import sys

    print(f"nnunet-ext grid: {message}", file=sys.stderr)
    return 1
