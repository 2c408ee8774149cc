"""The bad-input survey of issue 13 (docs/bad_inputs.md): every bad argument of ``tests/unit/test_inputs.py`` and each
broken input file (truncated, NaN/Inf, extra channel, 4D, 2D for a 3D model, not an image; predictions off their
reference's grid) against our commands, in this process, on the tiny fake nnU-Net world of ``tests/unit/test_inputs.py``
(a fake trained-model folder: every check happens before a network is loaded). Prints a markdown table: whether the
outcome is right (exit status 2, exactly one line on stderr, no file written or changed), the command, the status
and the line. ``--subprocess`` also runs a sample of one command per sub-command as a shell user does (the line
there includes anything printed at import). Example::

    OMP_NUM_THREADS=1 python benchmarks/bad_inputs.py --workdir /tmp/bad_inputs --subprocess > table.md

``--cost`` instead times the check of one CT-sized .nii.gz (200x512x512 int16) and one label map (uint8) against
SimpleITK reading it (what nnU-Net does anyway), and a cached re-check.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

from nnunet_ext.benchmark import bad_inputs as T  # the fake world and the bad arguments of tests/unit/test_inputs.py


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/nnunet_ext_bad_inputs")
    ap.add_argument("--subprocess", action="store_true", help="also run one sample per sub-command as a process")
    ap.add_argument("--cost", action="store_true", help="time the check of CT-sized files instead")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    if a.cost:
        return cost(Path(a.workdir))
    from nnunet_ext.cli import main as cli

    base = Path(a.workdir).resolve()

    def fresh():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        return T.make_world(base, os.environ.__setitem__)

    w = fresh()
    abbrev = {"C2F": T.bad_cases(w)[0][0][:13], "EV": ["evaluate", w.gt, w.pred, "-djfile", w.dj, "-pfile", w.pj],
              "BM": ["benchmark", "--skip-models", "--pred", f"nnUNetTrainer={w.pred}", "--labels", w.gt, "-djfile",
                     w.dj, "-pfile", w.pj, "--reference", "nnUNetTrainer", "--out", w.tmp / "bm_out"],
              "PR": ["predict", "-i", w.inp, "-o", w.tmp / "pred_out", "-d", T.DS, "-c", "3d_fullres", "-f", "0",
                     "-device", "cpu"]}

    def text(argv):
        argv = [str(x) for x in argv]
        for name, pre in abbrev.items():
            pre = [str(x) for x in pre]
            if argv[: len(pre)] == pre:
                argv = [f"${name}", *argv[len(pre):]]
                break
        return " ".join(shlex.quote(x) if not x.startswith("$") else x for x in argv).replace(str(base) + "/", "")

    rows = []

    def run(argv, label=""):
        before = T.tree(base)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = cli([str(x) for x in argv])
            except SystemExit as e:
                rc = e.code
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        ok = rc == 2 and len(lines) == 1 and T.tree(base) == before
        msg = " / ".join(lines).replace(str(base) + "/", "").replace("|", "/")
        rows.append(f"| {'yes' if ok else '**NO**'} | {label} | `{text(argv)}` | {rc} | {msg} |")

    for argv, _ in T.bad_cases(w):
        run(argv, "argument")

    def nan(w):
        x = T.image(1)
        x[0, 0, :3] = np.nan
        x[1, 1, 1] = np.inf
        T.write_image(w.inp / "case1_0000.nii.gz", x)

    def flip(w):
        import SimpleITK as sitk

        img = sitk.ReadImage(str(w.pred / "case1.nii.gz"))
        img.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, -1))
        sitk.WriteImage(img, str(w.pred / "case1.nii.gz"))

    inputs = {
        "truncated .nii.gz (60 % of its bytes)": lambda w: T.truncate(w.inp / "case1_0000.nii.gz"),
        "NaN/Inf voxels": nan,
        "extra _0001 for a 1-channel model": lambda w: T.write_image(w.inp / "case1_0001.nii.gz", T.image(3)),
        "4D image": lambda w: T.write_image(w.inp / "case1_0000.nii.gz", T.image(1, (2, 6, 10, 12))),
        "2D image, 3D model": lambda w: T.write_image(w.inp / "case1_0000.nii.gz", T.image(1, (10, 12))),
        "not an image": lambda w: (w.inp / "case1_0000.nii.gz").write_bytes(b"not a nifti"),
    }
    for label, make in inputs.items():
        for cmd in (abbrev["C2F"], abbrev["PR"], ["check-inputs", "-i", w.inp, "-d", T.DS, "-c", "3d_fullres"]):
            w = fresh()
            make(w)
            run(cmd, label)
    preds = {
        "prediction origin 100 mm off": lambda w: T.write_image(
            w.pred / "case1.nii.gz", T.label(), origin=(T.ORIGIN[0] + 100, *T.ORIGIN[1:])),
        "prediction spacing 2.5 -> 3.0": lambda w: T.write_image(w.pred / "case1.nii.gz", T.label(),
                                                                 spacing=(0.8, 0.9, 3.0)),
        "prediction one voxel wider": lambda w: T.write_image(w.pred / "case1.nii.gz", T.label((6, 10, 13))),
        "prediction direction flipped": flip,
        "truncated prediction": lambda w: T.truncate(w.pred / "case1.nii.gz", 0.5),
        "truncated reference": lambda w: T.truncate(w.gt / "case1.nii.gz", 0.5),
    }
    for label, make in preds.items():
        for cmd in (abbrev["EV"], ["check-inputs", "-i", w.pred, "--reference", w.gt], abbrev["BM"]):
            w = fresh()
            make(w)
            run(cmd, label)

    for name, pre in abbrev.items():
        print(f"- `${name}` = `{' '.join(shlex.quote(str(x)) for x in pre).replace(str(base) + '/', '')}`")
    print("\n| right | bad input | command | exit | stderr |\n|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{sum('| yes |' in r for r in rows)} of {len(rows)} right.")

    if a.subprocess:
        exe = str(Path(sys.executable).parent / "nnunet-ext")
        env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
        w = fresh()
        T.truncate(w.inp / "case1_0000.nii.gz")
        sample = [[*abbrev["EV"], "-o", w.afile / "s.json"], ["plan", "-d", "Dataset998_Nope", "--arch", "plain_unet"],
                  ["make-dataset", "-o", w.afile / "x"], ["check-inputs", "-i", w.inp, "--channels", "1"],
                  ["train", T.DS, "3d_fullres", "0", "-tr", "nnUNetTrainerMoNet_0epochs"],
                  [*abbrev["PR"][:-4], "-f", "x"], [*abbrev["BM"], "--repeats", "x"], abbrev["C2F"]]
        print("\nAs processes (stderr as a shell user sees it):\n")
        for argv in sample:
            before = T.tree(base)
            p = subprocess.run([exe, *map(str, argv)], env=env, capture_output=True, text=True, timeout=600)
            lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
            ok = p.returncode == 2 and len(lines) == 1 and T.tree(base) == before
            print(f"- {'right' if ok else '**WRONG**'}: `nnunet-ext {text(argv)}` -> exit {p.returncode}, "
                  f"{len(lines)} line(s): {' / '.join(lines).replace(str(base) + '/', '')[:300]}")
    return 0


def cost(workdir: Path) -> int:
    import time

    import SimpleITK as sitk

    from nnunet_ext import checks as inputs

    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    z = np.linspace(0, 1, 200)[:, None, None]
    y = np.linspace(-1, 1, 512)[None, :, None]
    x = np.linspace(-1, 1, 512)[None, None, :]
    ct = (1000 * ((x ** 2 + y ** 2) < 0.8) - 1000 + 40 * z + rng.normal(0, 20, (200, 512, 512))).astype(np.int16)
    lab = ((((x ** 2 + y ** 2) < 0.1) & (z > 0.3)) * np.ones((200, 512, 512))).astype(np.uint8)
    for name, arr in (("ct_int16", ct), ("ct_float32", ct.astype(np.float32)), ("label_uint8", lab)):
        f = str(workdir / f"{name}.nii.gz")
        sitk.WriteImage(sitk.GetImageFromArray(arr), f, True)
        t = time.perf_counter()
        sitk.ReadImage(f)
        t_read = time.perf_counter() - t
        t = time.perf_counter()
        inputs.inspect_file(f)
        t_check = time.perf_counter() - t
        t = time.perf_counter()
        inputs.inspect_file(f)
        t_again = time.perf_counter() - t
        print(f"| {name} {tuple(arr.shape)} | {os.path.getsize(f) / 2**20:.0f} MiB | {t_check:.2f} s | "
              f"{t_read:.2f} s | {t_check / t_read:.2f} | {t_again * 1e3:.2f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
