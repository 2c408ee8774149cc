"""Long runs of ``nnunet-ext predict-c2f``: the process's resident memory (RSS) case after case.

A run over many cases must not accumulate memory (predictions, logits, preprocessed crops or per-case records kept
alive, caches keyed by shape). This benchmark runs ``predict-c2f`` in ONE process over ``--cases`` synthetic cases
and prints the current RSS (``VmRSS``) and the peak so far (``VmHWM``, what a job scheduler kills on) after every
``--every`` cases. The run is the CLI's own code path (``nnunet_ext.cli.main(["predict-c2f", ...])``) in this
process; the only addition is a wrapper around :func:`nnunet_ext.c2f.pipeline.network_part` (the networks of one
case, while the previous case is exported and the next one preprocessed) that reads ``/proc/self/status`` after each
case (Linux).

Two modes:

* prepare (default): in ``--workdir``, the synthetic dataset with ``--cases`` test cases, planned and preprocessed
  (3d_fullres) with the stock commands, coarse and fine models trained for 1 epoch of ``--iters`` iterations
  (``nnUNetTrainerPlainUNet`` and its ``_fine`` version, fold 0; reused when present), then the measurement in a
  fresh python process;
* measure (``--input``): the measurement alone, with the nnU-Net folders of the environment (used by
  ``tests/integration/test_long_runs.py``).

Example (what docs/workflows.md reports)::

    OMP_NUM_THREADS=1 python benchmarks/c2f_rss.py --workdir /tmp/c2f_rss --cases 50 --every 10
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

COARSE = "nnUNetTrainerPlainUNet_1epoch_{iters}iters"
FINE = "nnUNetTrainerPlainUNet_fine_1epoch_{iters}iters"
CONF = "3d_fullres"


def rss_mb() -> Dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process, MiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1]) / 1024  # kB
    return {"rss_mb": out["VmRSS"], "peak_mb": out["VmHWM"]}


def c2f_argv(input_folder, output_folder, dataset, coarse: str, fine: str, fold: str = "0") -> List[str]:
    """``predict-c2f`` arguments: CPU, fold ``fold`` of both models, no mirroring (nnU-Net's flag spellings)."""
    return ["predict-c2f", "-i", str(input_folder), "-o", str(output_folder), "-d", str(dataset), "--coarse", coarse,
            "--fine", fine, "-f", fold, "-device", "cpu", "--disable_tta"]


def measure(argv: List[str], every: int) -> List[dict]:
    """Run ``nnunet-ext`` with ``argv`` in this process; RSS after every case (printed every ``every`` cases)."""
    from nnunet_ext.c2f import pipeline as c2f
    from nnunet_ext.cli import main

    samples: List[dict] = [{"cases": 0, "seconds": 0.0, **rss_mb()}]
    t0 = time.perf_counter()
    inner = c2f.network_part

    def network_part(*args, **kwargs):
        out = inner(*args, **kwargs)
        n = len(samples)
        samples.append({"cases": n, "seconds": time.perf_counter() - t0, **rss_mb()})
        if n % every == 0:
            s = samples[-1]
            print(f"[rss] after {n:3d} cases: RSS {s['rss_mb']:7.1f} MiB, peak {s['peak_mb']:7.1f} MiB, "
                  f"{s['seconds']:6.1f} s", flush=True)
        return out

    c2f.network_part = network_part
    try:
        rc = main(argv)
    finally:
        c2f.network_part = inner
    if rc != 0:
        sys.exit(f"predict-c2f exited {rc}")
    return samples


def _env(work: Path) -> dict:
    import nnunet_ext

    env = dict(os.environ)
    env.update(nnUNet_raw=str(work / "raw"), nnUNet_preprocessed=str(work / "preprocessed"),
               nnUNet_results=str(work / "results"), nnUNet_compile="f", nnUNet_def_n_proc="1",
               nnUNet_extTrainer=nnunet_ext.EXT_TRAINER_DIR, PYTHONWARNINGS="ignore", nnUNet_n_proc_DA="0")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _run(cmd, env):
    print("$", " ".join(cmd), flush=True)
    exe = Path(sys.executable).parent / cmd[0]
    proc = subprocess.run([str(exe) if exe.exists() else cmd[0], *cmd[1:]], env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def prepare(work: Path, cases: int, iters: int, dataset_id: int = 991) -> Path:
    """Dataset (``cases`` test cases), plans, preprocessed 3d_fullres, coarse and fine models; returns imagesTs."""
    from nnunet_ext.data.synthetic import make_dataset

    env = _env(work)
    raw = work / "raw"
    folders = list(raw.glob(f"Dataset{dataset_id:03d}_*")) if raw.is_dir() else []
    if folders and len(list((folders[0] / "imagesTs").glob("*.nii.gz"))) != cases:
        sys.exit(f"{folders[0]} has a different number of test cases: use another --workdir")
    if not folders:
        make_dataset(raw, dataset_id=dataset_id, num_cases=6, num_test_cases=cases, seed=0)
        folders = list(raw.glob(f"Dataset{dataset_id:03d}_*"))
    folder = folders[0]
    if not (work / "preprocessed" / folder.name / "nnUNetPlans.json").is_file():
        _run(["nnUNetv2_plan_and_preprocess", "-d", str(dataset_id), "-c", CONF, "-np", "1", "-npfp", "1"],
             {**env, "nnUNet_n_proc_DA": "1"})
    for tr in (COARSE.format(iters=iters), FINE.format(iters=iters)):
        if not (work / "results" / folder.name / f"{tr}__nnUNetPlans__{CONF}" / "fold_0" /
                "checkpoint_final.pth").is_file():
            _run(["nnUNetv2_train", str(dataset_id), CONF, "0", "-tr", tr, "-device", "cpu"], env)
    return folder / "imagesTs"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("c2f_rss_work"), help="prepare mode: work folder")
    p.add_argument("--cases", type=int, default=50, help="prepare mode: number of cases. Default 50")
    p.add_argument("--iters", type=int, default=4, help="prepare mode: training iterations. Default 4")
    p.add_argument("--every", type=int, default=10, help="print RSS after every N cases. Default 10")
    p.add_argument("--input", type=Path, help="measure mode: input folder (nnU-Net folders from the environment)")
    p.add_argument("--output", type=Path, help="measure mode: output folder")
    p.add_argument("-d", default="991", help="measure mode: dataset. Default 991")
    p.add_argument("--coarse", default=f"{COARSE.format(iters=4)}:{CONF}", help="measure mode: coarse model")
    p.add_argument("--fine", default=f"{FINE.format(iters=4)}:{CONF}", help="measure mode: fine model")
    p.add_argument("--json", type=Path, help="write the per-case samples here")
    a = p.parse_args(argv)
    if a.input is not None:
        out = a.output or a.input.parent / f"{a.input.name}_c2f_rss"
        samples = measure(c2f_argv(a.input, out, a.d, a.coarse, a.fine), a.every)
        if a.json:
            a.json.write_text(json.dumps(samples, indent=1))
        return 0
    work = a.workdir.resolve()
    images = prepare(work, a.cases, a.iters)
    cmd = [sys.executable, __file__, "--input", str(images), "--output", str(work / "predictions"),
           "--every", str(a.every), "--coarse", f"{COARSE.format(iters=a.iters)}:{CONF}",
           "--fine", f"{FINE.format(iters=a.iters)}:{CONF}", "--json", str(a.json or work / "rss.json")]
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, env=_env(work)).returncode


if __name__ == "__main__":
    sys.exit(main())
