"""The jobs of a benchmark grid, checked and decided before anything is submitted.

A grid is ``-d D -c CONFIG... -tr TRAINER[:PLANS]... [--c2f COARSE:CONFIG FINE:CONFIG]... -f FOLDS``:

* one **training job** per (trainer, plans, configuration, fold): nnU-Net's own ``nnUNetv2_train D CONFIG FOLD -tr
  TRAINER -p PLANS -device DEV [-num_gpus N] [--c]``; the pairs' coarse and fine models are training jobs too;
* one ``nnunet-ext crossval-c2f`` job per C2F pair, after (SLURM ``afterok``) the pair's training jobs;
* one ``nnunet-ext benchmark --skip-models --cv`` job after (``afterany``) every other job: the report is the very
  one ``benchmark`` writes on one machine (rows of failed jobs show as missing folds there).

What is done already is not submitted again: a fold with ``checkpoint_final.pth`` is done, one with
``checkpoint_latest.pth`` is resumed (``--c``); a pair with ``fold_k/validation/summary.json`` for every fold is
done; the report is rewritten only when another job runs or ``benchmark.json`` is missing.

Every bad input is a one-line :class:`~nnunet_ext.errors.UserError` raised here, before anything is written.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from nnunet_ext.errors import UserError, dataset_name, preprocessed_file

#: nnU-Net's default split when ``splits_final.json`` does not exist yet (the first training writes it)
NNUNET_DEFAULT_FOLDS = 5
REPORT_DIR = "report"


@dataclass
class GridJob:
    """One job of the grid. ``argv`` is the command without the python/console-script prefix (see
    :mod:`nnunet_ext.grid.jobs`); ``deps`` the names of the jobs it waits for, ``after`` SLURM's dependency type."""
    name: str
    kind: str                      # "train" | "c2f" | "benchmark"
    argv: List[str]
    deps: List[str] = field(default_factory=list)
    after: str = "afterok"
    fold_dir: Optional[str] = None  # training: nnU-Net's fold folder (checkpoints decide done / resume)
    status: str = "todo"           # "done" | "resume" | "todo"


@dataclass
class Grid:
    dataset: str                   # DatasetXXX_Name
    arguments: dict                # what defines the grid (compared with the state in --out)
    jobs: List[GridJob]
    report: Path

    def job(self, name: str) -> GridJob:
        return next(j for j in self.jobs if j.name == name)


def parse_trainer(spec: str) -> Tuple[str, str]:
    """``TRAINER[:PLANS]`` -> (trainer, plans)."""
    parts = spec.split(":")
    if len(parts) > 2 or not all(parts):
        raise UserError(f"-tr {spec!r}: expected TRAINER or TRAINER:PLANS, e.g. "
                        "nnUNetTrainerDMCNet:nnUNetPlans_dmcnet_3d")
    return parts[0], parts[1] if len(parts) == 2 else "nnUNetPlans"


def check_folds(ds: str, folds: Sequence[str]) -> List[int]:
    """Folds as integers within the dataset's split (``splits_final.json``, else nnU-Net's default 5 folds)."""
    splits_file = Path(os.environ.get("nnUNet_preprocessed", "")) / ds / "splits_final.json"
    n, where = NNUNET_DEFAULT_FOLDS, f"nnU-Net's default {NNUNET_DEFAULT_FOLDS}-fold split"
    if splits_file.is_file():
        try:
            n, where = len(json.loads(splits_file.read_text())), str(splits_file)
        except (OSError, ValueError) as e:
            raise UserError(f"{splits_file}: cannot read ({e})") from None
    out = []
    for f in folds:
        if not str(f).isdigit():
            raise UserError(f"-f {f!r}: a fold of the cross-validation is a number (0..{n - 1})")
        if int(f) >= n:
            raise UserError(f"-f {f}: fold outside the split ({where} has folds 0..{n - 1})")
        out.append(int(f))
    if len(set(out)) != len(out):
        raise UserError(f"-f {' '.join(map(str, folds))}: a fold is given twice")
    return out


def _configurations(ds: str, plans: str, cache: Dict[str, dict]) -> dict:
    if plans not in cache:
        f = preprocessed_file(ds, f"{plans}.json")
        try:
            cache[plans] = json.loads(f.read_text()).get("configurations", {})
        except (OSError, ValueError) as e:
            raise UserError(f"{f}: cannot read ({e})") from None
    return cache[plans]


def _check_model(ds: str, trainer: str, plans: str, configuration: str, cache: Dict[str, dict], what: str) -> None:
    from nnunet_ext.lookup import find_trainer_class

    find_trainer_class(trainer)
    confs = _configurations(ds, plans, cache)
    if configuration not in confs:
        raise UserError(f"{what}: configuration {configuration!r} does not exist in "
                        f"{preprocessed_file(ds, plans + '.json')} (has: {', '.join(confs)})")


def model_folder(ds: str, trainer: str, plans: str, configuration: str) -> Path:
    """nnU-Net's results folder of a model: ``nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIGURATION``."""
    results = os.environ.get("nnUNet_results")
    if not results:
        raise UserError("nnUNet_results is not set: it must point at the folder the models are trained into")
    return Path(results) / ds / f"{trainer}__{plans}__{configuration}"


def fold_status(fold_dir: Path) -> str:
    """``done`` (checkpoint_final.pth), ``resume`` (checkpoint_latest.pth only) or ``todo``."""
    if (fold_dir / "checkpoint_final.pth").is_file():
        return "done"
    return "resume" if (fold_dir / "checkpoint_latest.pth").is_file() else "todo"


def build_grid(dataset, configurations: Sequence[str], trainers: Sequence[str], c2f: Sequence[Sequence[str]],
               folds: Sequence[str], out, device: str = "cuda", gpus_per_job: int = 1,
               reference: Optional[str] = None) -> Grid:
    """Check every input and decide the jobs (what is done already, what resumes). Writes nothing."""
    from nnunet_ext.c2f.crossval import default_results_folder
    from nnunet_ext.c2f.models import ModelRef, parse_model_spec
    from nnunet_ext.checks import check_output_path

    check_output_path(out, "--out folder")
    if not trainers and not c2f:
        raise UserError("nothing to run: give -tr TRAINER[:PLANS]... and/or --c2f COARSE:CONFIG FINE:CONFIG")
    if gpus_per_job < 0:
        raise UserError(f"--gpus-per-job {gpus_per_job}: must be >= 0")
    ds = dataset_name(dataset)
    fold_ids = check_folds(ds, folds)
    cache: Dict[str, dict] = {}
    models: List[Tuple[str, str, str]] = []  # (trainer, plans, configuration), rows of the report first
    for spec in dict.fromkeys(trainers):
        tr, plans = parse_trainer(spec)
        for c in dict.fromkeys(configurations):
            _check_model(ds, tr, plans, c, cache, f"-tr {spec}")
            models.append((tr, plans, c))
    rows = list(models)
    pairs = []
    for coarse_spec, fine_spec in c2f:
        refs = []
        for what, spec in (("coarse", coarse_spec), ("fine", fine_spec)):
            tr, c, plans = parse_model_spec(spec, f"--c2f {what}")
            _check_model(ds, tr, plans, c, cache, f"--c2f {what} {spec}")
            refs.append(ModelRef(what, ds, tr, c, plans, Path(), [], "checkpoint_final.pth"))
            if (tr, plans, c) not in models:
                models.append((tr, plans, c))
        pairs.append((coarse_spec, fine_spec, default_results_folder(ds, refs[0], refs[1], "c2f"), refs[1]))

    common = ["-device", device] + (["-num_gpus", str(gpus_per_job)] if gpus_per_job > 1 else [])
    jobs: List[GridJob] = []
    train_names: Dict[Tuple[str, str, str], List[str]] = {}
    for tr, plans, c in models:
        folder = model_folder(ds, tr, plans, c)
        for f in fold_ids:
            name = f"{folder.name}__fold_{f}"
            job = GridJob(name, "train", [str(ds), c, str(f), "-tr", tr, "-p", plans, *common],
                          fold_dir=str(folder / f"fold_{f}"), status=fold_status(folder / f"fold_{f}"))
            jobs.append(job)
            train_names.setdefault((tr, plans, c), []).append(name)
    c2f_rows = []
    for coarse_spec, fine_spec, folder, fine in pairs:
        deps = [n for spec in (coarse_spec, fine_spec) for n in train_names[_key(parse_model_spec(spec, ""))]]
        done = all((folder / f"fold_{f}" / "validation" / "summary.json").is_file() for f in fold_ids)
        jobs.append(GridJob(folder.name, "c2f", ["crossval-c2f", "-d", ds, "--coarse", coarse_spec, "--fine",
                                                 fine_spec, "-f", *map(str, fold_ids), "-device",
                                                 "cpu" if device == "cpu" else "auto"],
                            deps=deps, status="done" if done and all(
                                any(j.name == d and j.status == "done" for j in jobs) for d in deps) else "todo"))
        c2f_rows.append((folder, fine))

    report = Path(out) / REPORT_DIR
    bench, ref_name = _benchmark_argv(ds, rows, c2f_rows, fold_ids, reference, report)
    others = [j for j in jobs]
    todo = any(j.status != "done" for j in others)
    jobs.append(GridJob("benchmark", "benchmark", bench, deps=[j.name for j in others], after="afterany",
                        status="todo" if todo or not (report / "benchmark.json").is_file() else "done"))
    arguments = {"dataset": ds, "configurations": list(dict.fromkeys(configurations)),
                 "trainers": [f"{t}:{p}" for t, p in map(parse_trainer, dict.fromkeys(trainers))],
                 "c2f": [list(p) for p in c2f], "folds": fold_ids, "device": device, "gpus_per_job": gpus_per_job,
                 "reference": ref_name}
    return Grid(ds, arguments, jobs, report)


def _key(parsed: Tuple[str, str, str]) -> Tuple[str, str, str]:
    tr, c, plans = parsed
    return tr, plans, c


def _is_stock(trainer: str) -> bool:
    from nnunet_ext.lookup import STOCK_TRAINER

    return trainer == STOCK_TRAINER or trainer.startswith(STOCK_TRAINER + "_")


def _benchmark_argv(ds: str, rows, c2f_rows, folds: List[int], reference: Optional[str], report: Path):
    """``benchmark --skip-models --cv`` of every row: a trainer row by its name when it has the reference's plans and
    configuration (what one would type on one machine), else ``NAME=FOLDER``; the C2F pairs as ``NAME=FOLDER``."""
    if rows:
        ref_row = next((r for r in rows if _is_stock(r[0])), rows[0])
        bench_plans, bench_conf = ref_row[1], ref_row[2]
    else:
        bench_plans, bench_conf = "nnUNetPlans", c2f_rows[0][1].configuration
    names, items = [], []
    for tr, plans, c in rows:
        if (plans, c) == (bench_plans, bench_conf):
            names.append(tr)
            items.append(tr)
        else:
            folder = model_folder(ds, tr, plans, c)
            names.append(folder.name)
            items.append(f"{folder.name}={folder}")
    for folder, _ in c2f_rows:
        names.append(folder.name)
        items.append(f"{folder.name}={folder}")
    if reference is None:
        reference = names[0] if not rows else names[rows.index(next((r for r in rows if _is_stock(r[0])), rows[0]))]
    elif reference not in names:
        raise UserError(f"--reference {reference!r} is not a row of the report (rows: {', '.join(names)})")
    argv = ["benchmark", "--skip-models", "--cv", "-d", ds, "-c", bench_conf, "-p", bench_plans, "--folds",
            *map(str, folds), "-tr", *items, "--reference", reference, "--out", str(report)]
    return argv, reference


def write_default_split(grid: Grid) -> Optional[Path]:
    """Write nnU-Net's default 5-fold ``splits_final.json`` (its own rule: sorted case identifiers of the
    preprocessed data, ``generate_crossval_split(seed=12345, n_splits=5)``) if it does not exist yet, so that the
    folds starting at the same time do not all write it (one could read another's half-written file). Returns the
    file written, or None."""
    pre = Path(os.environ.get("nnUNet_preprocessed", "")) / grid.dataset
    splits_file = pre / "splits_final.json"
    train = next((j for j in grid.jobs if j.kind == "train" and j.status != "done"), None)
    if splits_file.is_file() or train is None:
        return None
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    configuration, plans = train.argv[1], train.argv[train.argv.index("-p") + 1]
    conf = json.loads((pre / f"{plans}.json").read_text())["configurations"][configuration]
    data = pre / conf.get("data_identifier", f"{plans}_{configuration}")
    if not data.is_dir():
        return None  # not preprocessed: nnUNetv2_train reports it
    keys = sorted(infer_dataset_class(str(data)).get_identifiers(str(data)))
    tmp = splits_file.with_name(f".{splits_file.name}.{os.getpid()}")
    tmp.write_text(json.dumps(generate_crossval_split(keys, seed=12345, n_splits=5), indent=4))
    os.replace(tmp, splits_file)
    return splits_file
