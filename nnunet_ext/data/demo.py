"""``nnunet-ext demo``: the main job on the embedded synthetic dataset, end to end with the STOCK nnU-Net commands.

Into a work folder: make the synthetic pancreas dataset, ``nnUNetv2_plan_and_preprocess``, train a short schedule of
one of our trainers and of stock ``nnUNetTrainer`` on the same plans and split (fold 0), predict the test cases with
``nnUNetv2_predict``, evaluate both (nnU-Net's Dice, HD95 and NSD by :mod:`nnunet_ext.evaluation.summary`), and
print a side-by-side table. A second run reuses every step whose output is there and deletes nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

#: our trainer and configuration of the demo: on CUDA DMC-Net in 3d_fullres; on the CPU MoNet in 2d (the papers'
#: network built for CPU inference; docs/workflows.md has the reasons and the timings)
DEFAULT_TRAINER = {"cuda": ("nnUNetTrainerDMCNet", "3d_fullres"), "cpu": ("nnUNetTrainerMoNet", "2d")}
FALLBACK_TRAINER = "nnUNetTrainerPlainUNet"
STOCK = "nnUNetTrainer"


def schedule_suffix(epochs: int, iters: int, mirror: bool) -> str:
    """The trainer-name suffix of the demo's schedule (trainers/_naming.py), e.g. ``_nomirror_10epochs_25iters``."""
    return f"{'' if mirror else '_nomirror'}_{epochs}epoch{'s' if epochs != 1 else ''}_{iters}iters"


def _exe(name: str) -> str:
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else name


class _Step:
    """Numbered progress lines; ``times()`` gives the wall seconds each step took (until the next one began)."""

    def __init__(self, total: int):
        self.i, self.total, self.starts = 0, total, []

    def __call__(self, msg: str) -> None:
        self.i += 1
        self.starts.append(time.perf_counter())
        print(f"[{self.i}/{self.total}] {msg}", flush=True)

    def times(self) -> List[float]:
        ends = self.starts[1:] + [time.perf_counter()]
        return [e - s for s, e in zip(self.starts, ends)]


def _run_logged(cmd: List[str], env: dict, log: Path, echo=lambda line: False) -> float:
    """Run a stock command, its output into ``log``; lines for which ``echo`` is true are shown as progress."""
    from nnunet_ext.errors import UserError

    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            f.write(line)
            if echo(line):
                print("      " + line.strip(), flush=True)
        rc = proc.wait()
    if rc != 0:
        raise UserError(f"{Path(cmd[0]).name} failed (exit {rc}); see {log}")
    return time.perf_counter() - t0


def _count_params(trainer_name: str, plans_file: Path, dataset_json: Path, configuration: str) -> int:
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(load_json(str(plans_file)))
    cm = pm.get_configuration(configuration)
    dj = load_json(str(dataset_json))
    from nnunet_ext.lookup import build_network, find_trainer_class

    net = build_network(find_trainer_class(trainer_name), pm, cm, determine_num_input_channels(pm, cm, dj),
                        pm.get_label_manager(dj).num_segmentation_heads, True)
    from nnunet_ext.architectures import count_parameters

    return count_parameters(net)


def _evaluate(labels: Path, pred: Path, dataset_json: Path, plans_file: Path) -> Dict[str, Dict[str, float]]:
    """Per-class means of nnunet_ext.evaluation.summary (nnU-Net's Dice, HD95, NSD; conventions of nnunet_ext.evaluation.table)."""
    from nnunet_ext.evaluation.summary import evaluate_folder

    summary = evaluate_folder(str(labels), str(pred), str(dataset_json), str(plans_file),
                              output_file=str(pred / "summary_surface.json"), num_processes=1)
    return {str(k): v for k, v in summary["mean"].items()}


def run_demo(workdir: Path, trainer: str, configuration: str, epochs: int, iters: int, cases: int,
             test_cases: int, size_scale: float, device: str, dataset_id: int = 991, seed: int = 0,
             pancreas_scale: float = 1.0, tumour_scale: float = 1.0, tumour_fraction: float = 0.5,
             mirror: bool = True) -> dict:
    from nnunet_ext.lookup import ext_trainer_path_value
    from nnunet_ext.errors import UserError
    from nnunet_ext.data.synthetic import make_dataset

    workdir = workdir.resolve()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / ".nnunet_ext_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"work folder {workdir} is not writable ({e.strerror or e})") from None

    raw, pre, res = workdir / "nnUNet_raw", workdir / "nnUNet_preprocessed", workdir / "nnUNet_results"
    # a dataset already there is reused only if it was made with these options (checked before anything is written)
    options = dict(cases=cases, test_cases=test_cases, size_scale=size_scale, seed=seed,
                   pancreas_scale=pancreas_scale, tumour_scale=tumour_scale, tumour_fraction=tumour_fraction)
    record = workdir / "demo_dataset_options.json"
    existing = sorted(raw.glob(f"Dataset{dataset_id:03d}_*"))
    if existing:
        made_with = json.loads(record.read_text()) if record.is_file() else None
        if made_with != options:
            what = ("no record of the options it was made with" if made_with is None else "other options: " +
                    ", ".join(f"{k}={made_with.get(k)!r}" for k in options if made_with.get(k) != options[k]))
            raise UserError(f"work folder {workdir} holds {existing[0].name} made with {what}; use a new --workdir "
                            f"(or the same options)")
    logs = workdir / "logs"
    for p in (raw, pre, res, logs):
        p.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env.update(nnUNet_raw=str(raw), nnUNet_preprocessed=str(pre), nnUNet_results=str(res),
               nnUNet_extTrainer=ext_trainer_path_value(os.environ.get("nnUNet_extTrainer")),
               nnUNet_compile="f", PYTHONWARNINGS="ignore")
    if device == "cpu":
        env.setdefault("nnUNet_n_proc_DA", "0")
    # nnU-Net's worker pools (dataset check, export and scoring of the final validation) are one process here:
    # a pool of the default 8 spawned workers imports torch 8 times over for a handful of small cases
    env["nnUNet_def_n_proc"] = "1"
    step = _Step(7)
    t_all = time.perf_counter()

    if existing:
        folder = existing[0]
        step(f"dataset: reusing {folder}")
    else:
        step(f"dataset: writing synthetic pancreas CT ({cases} training + {test_cases} test cases) into {raw}")
        folder = make_dataset(raw, dataset_id=dataset_id, num_cases=cases, num_test_cases=test_cases,
                              size_scale=size_scale, seed=seed, pancreas_scale=pancreas_scale,
                              tumour_scale=tumour_scale, tumour_fraction=tumour_fraction)
        record.write_text(json.dumps(options, indent=2))
    dataset_json = folder / "dataset.json"
    plans_file = pre / folder.name / "nnUNetPlans.json"
    data_done = (pre / folder.name / f"nnUNetPlans_{configuration}").is_dir() and plans_file.is_file()
    if data_done:
        step("plan and preprocess: reusing nnUNet_preprocessed")
    else:
        step(f"plan and preprocess (nnUNetv2_plan_and_preprocess -d {dataset_id} -c {configuration})")
        # nnU-Net 2.8.1's planner fails with nnUNet_n_proc_DA=0 (torch.set_num_threads(0)): plan with 1
        _run_logged([_exe("nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", configuration, "-np", "1", "-npfp", "1",
                     "--verify_dataset_integrity"], {**env, "nnUNet_n_proc_DA": "1"}, logs / "plan_and_preprocess.log")

    schedule = schedule_suffix(epochs, iters, mirror)
    rows = []
    for k, base in enumerate((trainer, STOCK)):
        name = base + schedule
        out = res / folder.name / f"{name}__nnUNetPlans__{configuration}"
        ckpt = out / "fold_0" / "checkpoint_final.pth"
        timing_file = out / "fold_0" / "nnunet_ext_demo_timing.json"
        if ckpt.is_file():
            step(f"train {name}: reusing {ckpt}")
            train_s = json.loads(timing_file.read_text())["train_s"] if timing_file.is_file() else float("nan")
        else:
            step(f"train {name} ({configuration}, fold 0, {epochs} epochs x {iters} iterations, {device})")
            train_s = _run_logged([_exe("nnUNetv2_train"), str(dataset_id), configuration, "0", "-tr", name,
                                   "-device", device], env, logs / f"train_{name}.log",
                                  echo=lambda l: ("Epoch " in l and "time" not in l) or "Pseudo dice" in l)
            timing_file.write_text(json.dumps({"train_s": train_s}))
        pred = workdir / "predictions" / name
        cases_ts = sorted((folder / "imagesTs").glob("*_0000.nii.gz"))
        have = pred.is_dir() and all((pred / c.name.replace("_0000.nii.gz", ".nii.gz")).is_file() for c in cases_ts)
        if have and (pred / "nnunet_ext_demo_timing.json").is_file():
            step(f"predict and evaluate {name}: reusing {pred}")
            predict_s = json.loads((pred / "nnunet_ext_demo_timing.json").read_text())["predict_s"]
        else:
            step(f"predict {len(cases_ts)} test cases (nnUNetv2_predict -tr {name}) and evaluate")
            predict_s = _run_logged([_exe("nnUNetv2_predict"), "-i", str(folder / "imagesTs"), "-o", str(pred),
                                     "-d", str(dataset_id), "-c", configuration, "-tr", name, "-f", "0",
                                     "-device", device, "-npp", "1", "-nps", "1"], env, logs / f"predict_{name}.log")
            (pred / "nnunet_ext_demo_timing.json").write_text(json.dumps({"predict_s": predict_s}))
        metrics = _evaluate(folder / "labelsTs", pred, dataset_json, plans_file)
        prev = {k: os.environ.get(k) for k in ("nnUNet_extTrainer",)}
        os.environ["nnUNet_extTrainer"] = env["nnUNet_extTrainer"]
        try:
            params = _count_params(name, plans_file, dataset_json, configuration)
        finally:
            for kk, v in prev.items():
                os.environ.pop(kk) if v is None else os.environ.__setitem__(kk, v)
        rows.append(dict(trainer=name, params=params, train_s=train_s, predict_s=predict_s, metrics=metrics))
    step("table")
    table = format_table(rows, json.loads(dataset_json.read_text())["labels"])
    print(table)
    result = {"configuration": configuration, "device": device, "rows": rows,
              "total_s": time.perf_counter() - t_all, "step_s": step.times()}
    (workdir / "demo_results.json").write_text(json.dumps(result, indent=2))
    (workdir / "demo_results.md").write_text(table + "\n")
    print("\nstep times (s): " + ", ".join(f"[{i}] {t:.0f}" for i, t in enumerate(result["step_s"], 1))
          + f"; total {result['total_s']:.0f}")
    print(f"written: {workdir / 'demo_results.md'} and demo_results.json; logs in {logs}")
    return result


def format_table(rows: List[dict], labels: Dict[str, int]) -> str:
    """Markdown table of the demo: per class the mean of every metric of nnunet_ext.evaluation.table.METRICS, with the
    number of cases that had exactly one mask empty (counted at the worst value) beside it; n/a where undefined."""
    from nnunet_ext.evaluation.table import METRICS, N_ONE_EMPTY_KEY, fmt_mean

    classes = [(name, str(v)) for name, v in labels.items() if v != 0]
    metric_names = [m for m in METRICS if any(m in r["metrics"].get(c, {}) for r in rows for _, c in classes)]
    head = ["trainer", "params (M)", "train (s)", "predict (s)"] + [
        f"{m} {n}" + (f" ({METRICS[m].unit})" if METRICS[m].unit else "") for n, _ in classes for m in metric_names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["trainer"], f"{r['params'] / 1e6:.2f}", f"{r['train_s']:.0f}", f"{r['predict_s']:.1f}"]
        for _, c in classes:
            mean = r["metrics"].get(c, {})
            for m in metric_names:
                cells.append(fmt_mean(m, mean.get(m, float("nan")), n_one_empty=mean.get(N_ONE_EMPTY_KEY, 0)))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Means over the test cases; (k worst): k cases with exactly one mask empty, counted at the worst "
                 "value (Dice 0, NSD 0, HD95 = image diagonal); cases with both masks empty are excluded; n/a: "
                 "nothing defined (docs/metrics.md).")
    return "\n".join(lines)


def cmd_demo(args) -> int:
    import torch

    from nnunet_ext import trainers
    from nnunet_ext.errors import UserError
    from nnunet_ext.lookup import unknown_trainer_message

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    default_trainer, default_configuration = DEFAULT_TRAINER["cuda" if device == "cuda" else "cpu"]
    trainer = args.trainer
    if trainer is None:
        trainer = default_trainer if default_trainer in trainers.exported_trainers() else FALLBACK_TRAINER
    if trainer not in trainers.exported_trainers():
        raise UserError(unknown_trainer_message(trainer, ours_only=True))
    for flag, v in (("--epochs", args.epochs), ("--iters", args.iters)):
        if v < 1:
            raise UserError(f"{flag} must be >= 1, got {v}")
    configuration = args.configuration or default_configuration
    run_demo(Path(args.workdir), trainer, configuration, args.epochs, args.iters, args.cases,
             args.test_cases, args.size_scale, device, pancreas_scale=args.pancreas_scale,
             tumour_scale=args.tumour_scale, tumour_fraction=args.tumour_fraction, mirror=args.mirror)
    return 0


def register_cli(subparsers, name: str, help: str) -> None:
    s = subparsers.add_parser(
        name, help=help,
        description="Makes the synthetic pancreas CT dataset, runs nnUNetv2_plan_and_preprocess, trains a short "
                    "schedule of one of our trainers and of stock nnUNetTrainer on the same plans and split (fold 0), "
                    "predicts the test cases with nnUNetv2_predict, evaluates both and prints a side-by-side table. "
                    "Uses CUDA when present, the CPU otherwise. A second run reuses what is there.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--workdir", default="nnunet_ext_demo", help="[OPTIONAL] work folder (nnUNet_raw, "
                   "nnUNet_preprocessed, nnUNet_results, predictions, logs are made inside)")
    s.add_argument("-tr", "--trainer", default=None,
                   help="[OPTIONAL] our trainer to compare with stock nnUNetTrainer (default: "
                        f"{DEFAULT_TRAINER['cuda'][0]} on CUDA, {DEFAULT_TRAINER['cpu'][0]} on the CPU)")
    s.add_argument("-c", "--configuration", default=None,
                   help="[OPTIONAL] nnU-Net configuration (default 3d_fullres on CUDA, 2d on the CPU)")
    s.add_argument("--epochs", type=int, default=16, help="[OPTIONAL] epochs of the short schedule")
    s.add_argument("--iters", type=int, default=25, help="[OPTIONAL] training iterations per epoch")
    s.add_argument("--mirror", action="store_true",
                   help="[OPTIONAL] with nnU-Net's mirroring in training, validation and prediction (default: "
                        "without, trainer suffix _nomirror: 4x (2d) or 8x (3d) fewer forward passes at inference)")
    s.add_argument("--cases", type=int, default=8, help="[OPTIONAL] synthetic training cases")
    s.add_argument("--test-cases", type=int, default=4, help="[OPTIONAL] synthetic test cases")
    s.add_argument("--size-scale", type=float, default=0.75,
                   help="[OPTIONAL] size of the synthetic volumes (make-dataset: 1, about 24 x 64 x 64 voxels)")
    s.add_argument("--pancreas-scale", type=float, default=2.0,
                   help="[OPTIONAL] thickness of the synthetic pancreas, and so size of its tumour (make-dataset: 1)")
    s.add_argument("--tumour-scale", type=float, default=2.0,
                   help="[OPTIONAL] radii of the synthetic tumour, within the pancreas (make-dataset: 1)")
    s.add_argument("--tumour-fraction", type=float, default=1.0,
                   help="[OPTIONAL] chance that a synthetic case has a tumour (one training case is kept without)")
    s.add_argument("-device", "--device", choices=["cuda", "cpu", "mps"], default=None,
                   help="[OPTIONAL] default: cuda if available, else cpu")
    s.set_defaults(func=cmd_demo)
