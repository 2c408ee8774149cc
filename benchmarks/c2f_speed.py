"""Coarse-to-fine benchmark (resdsn_c2f Table 5): per-case time and Dice of

* **C2F**: coarse model over the whole volume at ``--coarse-step``, fine model over the coarse box + margin at
  ``--fine-step`` (``nnunet-ext predict-c2f``'s code path, :func:`nnunet_ext.c2f.pipeline.predict_case`);
* **fine-only**: the fine model over the whole volume at ``--fine-step`` (resdsn_c2f's "ResDSN Fine");
* **coarse-only**: the coarse model over the whole volume at ``--coarse-step`` ("ResDSN Coarse");

on the synthetic dataset (``nnunet_ext.data.synthetic.make_dataset``, ``--size-scale`` for bigger volumes). It makes the
dataset, plans and preprocesses it with the stock nnU-Net commands, optionally adds a configuration with a smaller
patch (``--patch-size``; same spacing, so it reuses 3d_fullres' preprocessed data, via ``inherits_from``) so that
a volume spans many tiles as a CT scan does, trains the coarse trainer and its ``_fine`` version for a short
schedule, and times the three inference modes case by case (each predictor warmed up on the first case first).
All post-processing (small components < ``--min-component-fraction``) is applied to every mode alike.

Example (CPU, what docs/c2f.md reports)::

    OMP_NUM_THREADS=2 python benchmarks/c2f_speed.py --workdir /tmp/c2f_bench --size-scale 2 --patch-size 16 48 48 \\
        --trainer nnUNetTrainerResDSN --epochs 20 --iters 25 --device cpu --disable-tta --oracle-box

Short trainings give weak models: the Dice values say what such models give, not what the method can reach.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _env(work: Path) -> dict:
    import nnunet_ext

    env = dict(os.environ)
    env.update(nnUNet_raw=str(work / "raw"), nnUNet_preprocessed=str(work / "preprocessed"),
               nnUNet_results=str(work / "results"), nnUNet_compile="f", nnUNet_def_n_proc="1",
               nnUNet_extTrainer=nnunet_ext.EXT_TRAINER_DIR, PYTHONWARNINGS="ignore")
    env.setdefault("nnUNet_n_proc_DA", "0")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _run(cmd, env, log: Path):
    print("$", " ".join(cmd), flush=True)
    with open(log, "a") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed (exit {proc.returncode}); see {log}")


def dice(ref: np.ndarray, pred: np.ndarray) -> float:
    a, b = ref.sum(), pred.sum()
    return float("nan") if a + b == 0 else float(2 * np.logical_and(ref, pred).sum() / (a + b))


def prepare(args, work: Path, env: dict) -> str:
    from nnunet_ext.data.synthetic import make_dataset

    log = work / "prepare.log"
    ds_name = f"Dataset{args.dataset_id:03d}_C2FBench"
    if not (work / "raw" / ds_name).is_dir():
        for d in ("raw", "preprocessed", "results"):
            (work / d).mkdir(parents=True, exist_ok=True)
        make_dataset(work / "raw", dataset_id=args.dataset_id, name="C2FBench", num_cases=args.num_cases,
                     num_test_cases=args.test_cases, seed=args.seed, size_scale=args.size_scale)
    plans_file = work / "preprocessed" / ds_name / "nnUNetPlans.json"
    if not plans_file.is_file():
        _run(["nnUNetv2_plan_and_preprocess", "-d", str(args.dataset_id), "-c", "3d_fullres", "-np", "1"],
             {**env, "nnUNet_n_proc_DA": "1"}, log)
    config = "3d_fullres"
    if args.patch_size:
        # nnU-Net's planner at 3d_fullres' spacing for a "median shape" of the wanted patch: a patch of about that
        # size with a topology that fits it; same spacing, so 3d_fullres' preprocessed data is reused
        from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

        config = "3d_bench" + "x".join(str(p) for p in args.patch_size)
        plans = json.loads(plans_file.read_text())
        if config not in plans["configurations"]:
            full = plans["configurations"]["3d_fullres"]
            os.environ["nnUNet_n_proc_DA"] = "1"
            planner = ExperimentPlanner(ds_name)
            new = planner.get_plans_for_configuration(full["spacing"], list(args.patch_size), full["data_identifier"],
                                                      float(np.prod(full["median_image_size_in_voxels"]) *
                                                            args.num_cases), {})
            os.environ["nnUNet_n_proc_DA"] = env["nnUNet_n_proc_DA"]
            from nnunetv2.utilities.json_export import recursive_fix_for_json_export

            entry = {"inherits_from": "3d_fullres", "patch_size": new["patch_size"],
                     "batch_size": new["batch_size"], "architecture": new["architecture"]}
            recursive_fix_for_json_export(entry)
            plans["configurations"][config] = entry
            plans_file.write_text(json.dumps(plans, indent=2))
        print(f"configuration {config}: patch {plans['configurations'][config]['patch_size']}")
    return config


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--dataset-id", type=int, default=996)
    p.add_argument("--size-scale", type=float, default=2.0, help="synthetic case size factor (default 2)")
    p.add_argument("--num-cases", type=int, default=6)
    p.add_argument("--test-cases", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patch-size", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"),
                   help="use a configuration inheriting from 3d_fullres with this patch size")
    p.add_argument("--trainer", default="nnUNetTrainerPlainUNet",
                   help="coarse trainer; the fine one is <trainer>_fine<margin> (default nnUNetTrainerPlainUNet)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--coarse-step", type=float, default=0.9)
    p.add_argument("--fine-step", type=float, default=0.5)
    p.add_argument("--margin-mm", type=float, default=10.0)
    p.add_argument("--min-component-fraction", type=float, default=0.2)
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    p.add_argument("--oracle-box", action="store_true",
                   help="also time 'c2f-oracle': coarse time + fine model on the GROUND-TRUTH box + margin (what C2F "
                        "costs when the coarse stage localises correctly; a diagnostic, not a method)")
    p.add_argument("--disable-tta", action="store_true", help="no mirroring test-time augmentation")
    p.add_argument("--repeats", type=int, default=1, help="time every case this many times, report the minimum")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default WORKDIR/c2f_speed.json)")
    args = p.parse_args(argv)

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = _env(work)
    os.environ.update({k: v for k, v in env.items() if k.startswith("nnUNet")})
    config = prepare(args, work, env)

    margin_tok = f"fine{args.margin_mm:g}mm".replace(".", "p")
    sched = f"{args.epochs}epoch{'s' if args.epochs != 1 else ''}_{args.iters}iters"
    coarse_tr, fine_tr = f"{args.trainer}_{sched}", f"{args.trainer}_{margin_tok}_{sched}"
    import torch

    train_device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    for tr in (coarse_tr, fine_tr):
        folder = work / "results" / f"Dataset{args.dataset_id:03d}_C2FBench" / f"{tr}__nnUNetPlans__{config}"
        if not (folder / "fold_0" / "checkpoint_final.pth").is_file():
            t0 = time.perf_counter()
            _run(["nnUNetv2_train", str(args.dataset_id), config, "0", "-tr", tr, "-device", train_device], env,
                 work / f"train_{tr}.log")
            print(f"trained {tr} in {time.perf_counter() - t0:.0f} s")

    import SimpleITK as sitk

    from nnunet_ext.boxes import bbox_with_margin_mm
    from nnunet_ext.c2f import pipeline as c2f
    from nnunet_ext.c2f.models import load_predictor, resolve_model, torch_device

    coarse = resolve_model("coarse", args.dataset_id, f"{coarse_tr}:{config}", ["0"], "checkpoint_final.pth")
    fine = resolve_model("fine", args.dataset_id, f"{fine_tr}:{config}", ["0"], "checkpoint_final.pth")
    dev = torch_device(args.device)
    coarse_p = load_predictor(coarse, args.coarse_step, dev, not args.disable_tta)
    fine_p = load_predictor(fine, args.fine_step, dev, not args.disable_tta)
    from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name

    reader = recursive_find_reader_writer_by_name(coarse.plans["image_reader_writer"])()
    raw = work / "raw" / f"Dataset{args.dataset_id:03d}_C2FBench"
    cases = c2f.list_cases(raw / "imagesTs", ".nii.gz", 1)

    def timed(fn):
        best, out = None, None
        for _ in range(args.repeats):
            if dev.type == "cuda":
                import torch
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn()
            if dev.type == "cuda":
                import torch
                torch.cuda.synchronize()
            t = time.perf_counter() - t0
            best = t if best is None else min(best, t)
        return out, best

    def whole(pred):
        def f(files):
            image, props = reader.read_images(files)
            seg = c2f.run_stage(pred, image, props["spacing"]).seg
            return c2f.remove_small_components(seg, args.min_component_fraction)
        return f

    def c2f_fn(files):
        seg, _, rec = c2f.predict_case("case", files, coarse_p, fine_p, reader, "c2f", args.margin_mm,
                                       args.min_component_fraction)
        return seg, rec

    first = next(iter(cases.values()))
    whole(coarse_p)(first), whole(fine_p)(first)  # warm-up (not timed)

    rows, labels = [], None
    for case, files in cases.items():
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTs" / f"{case}.nii.gz")))
        labels = labels or sorted(int(v) for v in np.unique(ref) if v > 0)
        (seg_c2f, rec), t_c2f = timed(lambda: c2f_fn(files))
        seg_fine, t_fine = timed(lambda: whole(fine_p)(files))
        seg_coarse, t_coarse = timed(lambda: whole(coarse_p)(files))
        oracle = None
        if args.oracle_box:
            def oracle_fn():
                image, props = reader.read_images(files)
                box = bbox_with_margin_mm(ref > 0, args.margin_mm, props["spacing"])
                pre = c2f.preprocess(fine_p, image, props["spacing"])
                seg = c2f.run_fine_in_box(fine_p, pre, box, ref.shape)
                return c2f.remove_small_components(seg, args.min_component_fraction)
            seg_oracle, t_oracle_fine = timed(oracle_fn)
            oracle = (seg_oracle, rec["coarse_s"] + t_oracle_fine)
        row = {"case": case, "shape": list(ref.shape), "box_fraction": rec["fine_voxels_fraction"],
               "fallback": rec["fallback"], "c2f_coarse_s": rec["coarse_s"], "c2f_fine_s": rec["fine_s"]}
        modes = [("c2f", seg_c2f, t_c2f), ("fine", seg_fine, t_fine), ("coarse", seg_coarse, t_coarse)]
        if oracle is not None:
            modes.append(("c2f-oracle", *oracle))
        for name, seg, t in modes:
            row[f"{name}_s"] = t
            row[f"{name}_dice_fg"] = dice(ref > 0, seg > 0)
            for lab in labels:
                row[f"{name}_dice_{lab}"] = dice(ref == lab, seg == lab)
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)

    def mean(key):
        return float(np.nanmean([r[key] for r in rows]))

    names = ["c2f", "fine", "coarse"] + (["c2f-oracle"] if args.oracle_box else [])
    summary = {name: {"mean_s": mean(f"{name}_s"), "mean_dice_fg": mean(f"{name}_dice_fg"),
                      **{f"mean_dice_{lab}": mean(f"{name}_dice_{lab}") for lab in labels}}
               for name in names}
    summary["c2f_time_saving_vs_fine"] = 1 - summary["c2f"]["mean_s"] / summary["fine"]["mean_s"]
    summary["c2f_over_coarse_time"] = summary["c2f"]["mean_s"] / summary["coarse"]["mean_s"]
    result = {"command": " ".join([os.path.basename(sys.argv[0]), *(argv if argv is not None else sys.argv[1:])]),
              "device": str(dev), "torch_threads": __import__("torch").get_num_threads(), "configuration": config,
              "patch_size": list(coarse_p.configuration_manager.patch_size), "coarse": coarse_tr, "fine": fine_tr,
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "cases": rows, "summary": summary}
    out = args.out or work / "c2f_speed.json"
    out.write_text(json.dumps(result, indent=2))
    print()
    print("| mode | step | mean time / case (s) | mean Dice (all foreground) | " +
          " | ".join(f"mean Dice label {lab}" for lab in labels) + " |")
    print("|---|---|---|---|" + "---|" * len(labels))
    steps = {"c2f": f"{args.coarse_step} / {args.fine_step}", "fine": args.fine_step, "coarse": args.coarse_step,
             "c2f-oracle": f"{args.coarse_step} / {args.fine_step}"}
    for name in names:
        step = steps[name]
        s = summary[name]
        print(f"| {name} | {step} | {s['mean_s']:.2f} | {s['mean_dice_fg']:.3f} | " +
              " | ".join(f"{s[f'mean_dice_{lab}']:.3f}" for lab in labels) + " |")
    print(f"\nC2F time saving vs fine-only: {100 * summary['c2f_time_saving_vs_fine']:.1f}%; C2F / coarse-only time: "
          f"{summary['c2f_over_coarse_time']:.2f}x  ({out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
