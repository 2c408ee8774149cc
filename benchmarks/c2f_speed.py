"""Wall time of ``nnunet-ext predict-c2f`` against coarse-only ``nnUNetv2_predict`` at CT size on the CPU (issue #22,
item 4): the C2F / coarse-only ratio, and each C2F stage's time per case (preprocess, coarse, box, fine, export,
from ``c2f_times.json``).

Both commands run as a user runs them, in subprocesses, on the same input folder of CT-like volumes (default
512 x 512 x 200 voxels at 0.7 x 0.7 x 2.5 mm: a body of soft tissue with noise in air, a bright pancreas-sized
ellipsoid), with the same "small model" for the coarse model and for the fine model: a few 3D convolutions (real
work on every tile) whose output is a threshold of the normalised intensity (so the coarse box is the organ's, as a
trained model's would be). The plans' configuration has a pancreas-like 3d_fullres spacing (2.5 x 0.8 x 0.8 mm, so
preprocessing and export resample in-plane) and patch (40 x 224 x 224). ``nnUNetv2_predict`` runs the coarse model
at ``--coarse-step`` with one preprocessing and one export worker (``-npp 1 -nps 1``); ``predict-c2f`` runs the pair
(coarse at ``--coarse-step``, fine at ``-step_size`` 0.5 on the box + 10 mm) with its one reading and one writing
worker. Both read the same ``OMP_NUM_THREADS``. Model loading and start-up are in both wall times.

Example (what docs/c2f.md reports)::

    OMP_NUM_THREADS=2 python benchmarks/c2f_speed.py --workdir /tmp/c2f_speed --cases 2
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

DATASET_ID, DATASET = 995, "Dataset995_C2FSpeed"
TRAINER = "nnUNetTrainerC2FSpeedStandIn"
#: a small model: three 3D convolutions on every tile (their result is multiplied by 0, so the output is the
#: threshold's and the work is real)
TRAINER_CODE = '''
import torch
from torch import nn
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class SmallThresholdNet(nn.Module):
    def __init__(self, num_classes, threshold=1.0, width=8):
        super().__init__()
        self.threshold, self.num_classes = threshold, num_classes
        self.body = nn.Sequential(nn.Conv3d(1, width, 3, padding=1), nn.LeakyReLU(),
                                  nn.Conv3d(width, width, 3, padding=1), nn.LeakyReLU(),
                                  nn.Conv3d(width, num_classes, 1))

    def forward(self, x):
        fg = 20 * (x[:, :1] - self.threshold)
        rest = torch.full_like(fg, -100.0).repeat(1, self.num_classes - 2, 1, 1, 1)
        return torch.cat([torch.zeros_like(fg), fg, rest], 1) + 0 * self.body(x)


class nnUNetTrainerC2FSpeedStandIn(nnUNetTrainer):
    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision=True):
        return SmallThresholdNet(num_output_channels)
'''


def _env(work: Path, threads: int) -> dict:
    import nnunet_ext

    env = dict(os.environ)
    env.update(nnUNet_raw=str(work / "raw"), nnUNet_preprocessed=str(work / "preprocessed"),
               nnUNet_results=str(work / "results"), nnUNet_compile="f", nnUNet_def_n_proc=str(threads),
               OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore",
               nnUNet_extTrainer=nnunet_ext.EXT_TRAINER_DIR + os.pathsep + str(work / "trainers"))
    return env


def ct_like(shape, spacing, seed: int) -> np.ndarray:
    """int16 HU volume (z, y, x): air, an elliptic body of soft tissue (40 HU, noise 20 HU), a pancreas-sized
    ellipsoid (60 x 25 x 20 mm, 200 HU) off centre."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    vol = np.full(shape, -1000, np.int16)
    body = ((y - shape[1] / 2) / (0.42 * shape[1])) ** 2 + ((x - shape[2] / 2) / (0.47 * shape[2])) ** 2 <= 1
    vol[:, body[0]] = 40
    vol += (rng.normal(0, 20, shape) * (vol > -1000)).astype(np.int16)
    c = [shape[0] * 0.55 * spacing[0], shape[1] * 0.45 * spacing[1], shape[2] * 0.55 * spacing[2]]
    organ = (((z * spacing[0] - c[0]) / 10.0) ** 2 + ((y * spacing[1] - c[1]) / 12.5) ** 2
             + ((x * spacing[2] - c[2]) / 30.0) ** 2) <= 1
    vol[organ] = 200
    return vol


def prepare(work: Path, args) -> Path:
    """Input folder, plans, dataset.json and the stand-in model (fold 0) under ``work``; returns the input folder."""
    import SimpleITK as sitk
    import torch

    from nnunet_ext.plans.synth import configuration_entry, dataset_json_for, plans_dict

    images = work / "imagesTs"
    images.mkdir(parents=True, exist_ok=True)
    spacing = tuple(args.spacing)
    for i in range(args.cases):
        f = images / f"ct_{i:03d}_0000.nii.gz"
        if not f.is_file():
            img = sitk.GetImageFromArray(ct_like(tuple(args.size), spacing, i))
            img.SetSpacing(spacing[::-1])
            sitk.WriteImage(img, str(f))
    (work / "trainers").mkdir(exist_ok=True)
    (work / "trainers" / "c2f_speed_trainers.py").write_text(TRAINER_CODE)
    cfg = configuration_entry(args.patch, [[1, 1, 1]], [[3, 3, 3]], [8], spacing=args.target)
    plans = plans_dict({"3d_fullres": cfg}, dataset_name=DATASET, median_spacing=args.target,
                       median_shape=args.size)
    dj = {**dataset_json_for({"background": 0, "pancreas": 1, "tumour": 2}), "numTraining": 1}
    for d in ("raw", "preprocessed"):
        (work / d / DATASET).mkdir(parents=True, exist_ok=True)
    (work / "raw" / DATASET / "dataset.json").write_text(json.dumps(dj))
    (work / "preprocessed" / DATASET / "nnUNetPlans.json").write_text(json.dumps(plans))
    folder = work / "results" / DATASET / f"{TRAINER}__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dj))
    sys.path.insert(0, str(work / "trainers"))
    from c2f_speed_trainers import SmallThresholdNet

    torch.save({"network_weights": SmallThresholdNet(3).state_dict(), "trainer_name": TRAINER,
                "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": None},
               folder / "fold_0" / "checkpoint_final.pth")
    return images


def timed(cmd, env, log: Path) -> float:
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    with open(log, "a") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed (exit {proc.returncode}); see {log}")
    return wall


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--cases", type=int, default=2)
    p.add_argument("--size", type=int, nargs=3, default=[200, 512, 512], metavar=("Z", "Y", "X"))
    p.add_argument("--spacing", type=float, nargs=3, default=[2.5, 0.7, 0.7], metavar=("Z", "Y", "X"))
    p.add_argument("--target", type=float, nargs=3, default=[2.5, 0.8, 0.8], help="3d_fullres spacing (mm)")
    p.add_argument("--patch", type=int, nargs=3, default=[40, 224, 224])
    p.add_argument("--coarse-step", type=float, default=0.9)
    p.add_argument("--c2f-first", action="store_true", help="run predict-c2f before nnUNetv2_predict (on a shared "
                   "machine, alternate the order between runs)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    p.add_argument("--out", type=Path, default=None, help="results JSON (default WORKDIR/c2f_speed.json)")
    args = p.parse_args(argv)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    images = prepare(work, args)
    env, log = _env(work, args.threads), work / "run.log"
    model = f"{TRAINER}:3d_fullres"
    res = {"size": args.size, "spacing": args.spacing, "target": args.target, "patch": args.patch,
           "cases": args.cases, "threads": args.threads, "coarse_step": args.coarse_step}
    for out in ("coarse_only", "c2f"):
        if (work / out).exists():
            import shutil

            shutil.rmtree(work / out)
    runs = {"coarse_only_s": ["nnUNetv2_predict", "-i", str(images), "-o", str(work / "coarse_only"), "-d",
                              str(DATASET_ID), "-c", "3d_fullres", "-tr", TRAINER, "-f", "0", "-step_size",
                              str(args.coarse_step), "-device", "cpu", "--disable_tta", "-npp", "1", "-nps", "1"],
            "c2f_s": ["nnunet-ext", "predict-c2f", "-i", str(images), "-o", str(work / "c2f"), "-d", str(DATASET_ID),
                      "--coarse", model, "--fine", model, "-f", "0", "--coarse-step", str(args.coarse_step),
                      "-device", "cpu", "--disable_tta"]}
    res["order"] = ["c2f_s", "coarse_only_s"] if args.c2f_first else ["coarse_only_s", "c2f_s"]
    for key in res["order"]:
        res[key] = timed(runs[key], env, log)
    times = json.loads((work / "c2f" / "c2f_times.json").read_text())["cases"]
    stages = ("preprocess_s", "coarse_s", "box_s", "fine_s", "export_s", "total_s")
    res["c2f_stages_mean_s"] = {k: float(np.mean([r[k] for r in times.values()])) for k in stages}
    res["fine_voxels_fraction"] = float(np.mean([r["fine_voxels_fraction"] for r in times.values()]))
    res["ratio"] = res["c2f_s"] / res["coarse_only_s"]
    import SimpleITK as sitk

    res["differing_voxels"] = int(sum(
        (sitk.GetArrayFromImage(sitk.ReadImage(str(work / "c2f" / f"{c}.nii.gz")))
         != sitk.GetArrayFromImage(sitk.ReadImage(str(work / "coarse_only" / f"{c}.nii.gz")))).sum()
        for c in times))
    print(f"{args.cases} case(s) of {' x '.join(map(str, args.size[::-1]))} voxels, {args.threads} thread(s):")
    print(f"coarse-only nnUNetv2_predict {res['coarse_only_s']:.1f} s; predict-c2f {res['c2f_s']:.1f} s; "
          f"ratio {res['ratio']:.3f}")
    print("predict-c2f per case (mean): " + ", ".join(f"{k[:-2]} {v:.1f} s"
                                                      for k, v in res["c2f_stages_mean_s"].items())
          + f"; fine box {100 * res['fine_voxels_fraction']:.1f}% of the grid")
    print(f"voxels where C2F and coarse-only differ (same stand-in model): {res['differing_voxels']}")
    out = args.out or work / "c2f_speed.json"
    out.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
