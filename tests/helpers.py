"""What the tests share: the stock nnU-Net commands run in subprocesses on the CPU with our trainers found through
``nnUNet_extTrainer`` (exactly what a user does after ``eval "$(nnunet-ext env)"``), checks of their outputs, and
:func:`shared`, the session fixtures built once per test run however many pytest-xdist workers run the tests."""
from __future__ import annotations

import inspect
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import pytest

import nnunet_ext

DATASET_ID = 991
DATASET_NAME = "SyntheticPancreas"
PLAIN_3D = "nnUNetTrainerPlainUNet_1epoch_4iters"
#: the small plans the family end-to-end runs share (:func:`shared_small_plans`; docs/testing.md says why)
SMALL_3D = "nnUNetPlans_small3d"
SMALL_2D = "nnUNetPlans_small2d"


# ------------------------------------------------------------------------------------------ built once per run
def run_folder(tmp_path_factory) -> Path:
    """The folder of this test run that every worker sees: pytest's base temporary folder, or under pytest-xdist
    the parent of the workers' own (``pytest-N/popen-gwK``: ``pytest-N``)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"


def build_once(key: str, root: Path, build: Callable[[Path], object]):
    """``build(folder)`` the first time ``key`` is asked for in this run, in whichever worker asks first (the others
    wait on a file lock, then read the pickled value); a failure is recorded and fails the other workers too."""
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    result = root / f"{key}.pickle"
    with FileLock(str(root / f"{key}.lock")):
        if not result.exists():
            folder = root / key
            shutil.rmtree(folder, ignore_errors=True)  # left by a builder that was killed mid-build
            folder.mkdir()
            try:
                value = build(folder)
                _write(result, ("ok", value))  # inside the try: a value that does not pickle is recorded too
            except KeyboardInterrupt:
                raise
            except pytest.skip.Exception as e:
                _write(result, ("skip", str(e)))
                raise
            except BaseException as e:  # pytest.fail raises a BaseException
                _write(result, ("error", f"{type(e).__name__}: {e}"))
                raise
            return value
    status, value = pickle.loads(result.read_bytes())
    if status == "skip":
        pytest.skip(value)
    if status == "error":
        pytest.fail(f"{key} failed in another test worker: {value}", pytrace=False)
    return value


def _write(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(pickle.dumps(obj))
    os.replace(tmp, path)


def shared(*needs: str):
    """Decorator: ``@shared("nnunet_dataset")`` on ``def dmc_e2e_2d(ds, tmp): ...`` defines the session fixture
    ``dmc_e2e_2d``: the function gets the values of the fixtures ``needs`` and an empty folder ``tmp`` of its own,
    and runs once per test run (:func:`build_once`); its value must pickle. A shared fixture writes only below
    ``tmp`` and into result folders that no other one writes (its own trainer names)."""

    def deco(fn):
        def fixture(tmp_path_factory, **values):
            return build_once(f"{fn.__module__}.{fn.__name__}", run_folder(tmp_path_factory),
                              lambda tmp: fn(*(values[n] for n in needs), tmp))

        params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("tmp_path_factory", *needs)]
        fixture.__signature__ = inspect.Signature(params)
        fixture.__name__, fixture.__qualname__, fixture.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        fixture.__module__ = fn.__module__
        return pytest.fixture(scope="session", name=fn.__name__)(fixture)

    return deco


# ------------------------------------------------------------------------------------------ the stock commands
def stock_env(raw: Path, preprocessed: Path, results: Path) -> dict:
    """The environment of a user of nnU-Net on a small CPU machine, plus our ``nnUNet_extTrainer``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet")}
    env.update(nnUNet_raw=str(raw), nnUNet_preprocessed=str(preprocessed), nnUNet_results=str(results),
               nnUNet_extTrainer=nnunet_ext.EXT_TRAINER_DIR, nnUNet_n_proc_DA="0", nnUNet_compile="f",
               nnUNet_def_n_proc="1", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
               PYTHONWARNINGS="ignore")
    return env


def _nnunet_entry_points() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group="console_scripts") if ep.name.startswith("nnUNetv2_")}


NNUNET_ENTRY_POINTS = _nnunet_entry_points()


def run(cmd: List[str], env: dict, timeout: int = 900, check: bool = True,
        console: bool = False) -> subprocess.CompletedProcess:
    """Run a console command, fail the test with its output on error.

    nnU-Net's commands (``nnUNetv2_*``) run as ``python -c`` calling the very entry-point function the console script
    calls, with the same arguments and environment, unless ``console``: nnU-Net's worker pools are "spawn" pools,
    whose workers re-import a console script's main module (all of nnunetv2's training code) but not a ``-c`` one's.
    test_end_to_end runs the console scripts themselves (``console=True``). Other commands (``nnunet-ext``, ...) are
    resolved next to the running python."""
    if cmd[0] in NNUNET_ENTRY_POINTS and not console:
        module, func = NNUNET_ENTRY_POINTS[cmd[0]].split(":")
        code = f"import sys; sys.argv[0] = {cmd[0]!r}; from {module} import {func}; sys.exit({func}())"
        full = [sys.executable, "-c", code, *cmd[1:]]
    else:
        exe = Path(sys.executable).parent / cmd[0]
        full = [str(exe) if exe.exists() else cmd[0], *cmd[1:]]
    proc = subprocess.run(full, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
                    f"--- stderr\n{proc.stderr[-4000:]}")
    return proc


def train(ds, trainer: str, configuration: str, fold: int = 0, extra: Optional[List[str]] = None,
          plans: str = "nnUNetPlans", console: bool = False):
    """Stock ``nnUNetv2_train`` on the CPU (:func:`run`); returns the fold's output folder. A model that several tests
    use is trained once, by a :func:`shared` fixture (e.g. ``plain_unet_3d``), not by each test."""
    out = ds.results / ds.dataset_folder.name / f"{trainer}__{plans}__{configuration}" / f"fold_{fold}"
    run(["nnUNetv2_train", str(ds.dataset_id), configuration, str(fold), "-tr", trainer, "-device", "cpu",
         "-p", plans, *(extra or [])], ds.env, console=console)
    assert (out / "checkpoint_final.pth").is_file(), f"no final checkpoint in {out}"
    return out


def predict(ds, trainer: str, configuration: str, out: Path, fold: int = 0, extra: Optional[List[str]] = None,
            plans: str = "nnUNetPlans", console: bool = False):
    """Stock ``nnUNetv2_predict`` of the test images on the CPU into ``out`` (:func:`run`)."""
    run(["nnUNetv2_predict", "-i", str(ds.images_ts), "-o", str(out), "-d", str(ds.dataset_id), "-c", configuration,
         "-tr", trainer, "-f", str(fold), "-device", "cpu", "-npp", "1", "-nps", "1", "-p", plans, *(extra or [])],
        ds.env, console=console)
    return out


def spec_of(fold_dir: Path) -> str:
    """``TRAINER:CONFIGURATION:PLANS`` of a trained fold folder (``.../TRAINER__PLANS__CONFIGURATION/fold_K``)."""
    trainer, plans, configuration = fold_dir.parent.name.split("__")
    return f"{trainer}:{configuration}:{plans}"


def c2f_cmd(ds, out, coarse, fine, *extra):
    """``nnunet-ext predict-c2f`` of the test images with the pair ``coarse`` / ``fine`` (fold 0, CPU, no test-time
    mirroring), then ``extra``."""
    return ["nnunet-ext", "predict-c2f", "-i", str(ds.images_ts), "-o", str(out), "-d", str(ds.dataset_id),
            "--coarse", coarse, "--fine", fine, "-f", "0", "-device", "cpu", "--disable_tta", *extra]


# ------------------------------------------------------------------------------------------ checks and plans
def n_trainable(net) -> int:
    """Trainable parameters, counted here independently of the registry's ``count_parameters``."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def assert_predictions_match_inputs(pred_dir: Path, images_dir: Path, labels=(0, 1, 2)):
    """A prediction for every input case, with the input's size, spacing, origin and direction, labels in ``labels``."""
    import SimpleITK as sitk

    images = sorted(images_dir.glob("*_0000.nii.gz"))
    assert images, f"no test images in {images_dir}"
    for img_path in images:
        case = img_path.name[: -len("_0000.nii.gz")]
        pred_path = pred_dir / f"{case}.nii.gz"
        assert pred_path.is_file(), f"missing prediction {pred_path}"
        img, pred = sitk.ReadImage(str(img_path)), sitk.ReadImage(str(pred_path))
        assert pred.GetSize() == img.GetSize()
        assert np.allclose(pred.GetSpacing(), img.GetSpacing())
        assert np.allclose(pred.GetOrigin(), img.GetOrigin())
        assert np.allclose(pred.GetDirection(), img.GetDirection())
        values = set(np.unique(sitk.GetArrayFromImage(pred)).tolist())
        assert values <= set(labels), f"{pred_path.name}: labels {values}"


def small_plans(ds, name: str = "nnUNetPlans_small3d", patch=(16, 48, 48), features=(8, 16, 32),
                configuration: str = "3d_fullres") -> str:
    """A copy of the dataset's nnUNetPlans whose ``configuration`` (3d_fullres, or 2d) has a small patch, three
    stages and narrow features (same spacing and preprocessed data), for networks whose full plans are too slow for a
    CPU test. Written atomically, and only if the file does not hold these plans already."""
    plans = json.loads(ds.plans_file.read_text())
    conf = plans["configurations"][configuration]
    dim = len(conf["patch_size"])
    if len(patch) != dim:
        raise ValueError(f"patch {patch} has {len(patch)} axes, {configuration} has {dim}")
    conf.update(patch_size=list(patch), batch_size=1 if dim == 3 else 2)
    kw = conf["architecture"]["arch_kwargs"]
    n = len(features)
    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2]] if dim == 3 else [[1, 1], [2, 2], [2, 2]]
    kw.update(n_stages=n, features_per_stage=list(features), kernel_sizes=[[3] * dim] * n,
              strides=strides[:n], n_conv_per_stage=[2] * n, n_conv_per_stage_decoder=[2] * (n - 1))
    plans["plans_name"] = name
    target = ds.plans_file.parent / f"{name}.json"
    text = json.dumps(plans, indent=2)
    if target.is_file() and target.read_text() == text:
        return name
    tmp = target.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, target)
    return name


def shared_small_plans(ds, configuration: str) -> str:
    """The small plans the end-to-end tests share: :data:`SMALL_3D` for 3d_fullres, :data:`SMALL_2D` (patch 48x48)
    for 2d (written with the dataset, conftest's ``nnunet_dataset``)."""
    if configuration == "3d_fullres":
        return small_plans(ds, SMALL_3D)
    return small_plans(ds, SMALL_2D, patch=(48, 48), configuration="2d")
