"""Shared fixtures: a tiny synthetic dataset planned and preprocessed once per test session with the STOCK nnU-Net
commands, and helpers that run the stock ``nnUNetv2_train`` / ``nnUNetv2_predict`` in subprocesses on the CPU with
our trainers found through ``nnUNet_extTrainer`` (exactly what a user does after ``eval "$(nnunet-ext env)"``; the
console scripts' own entry-point functions, see :func:`run`). The dataset and the models several tests share are background jobs (tests/background.py): they are computed while
the tests that need none run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import List, Optional

# Before anything loads torch's OpenMP runtime (read once, at load): threads that wait for work sleep instead of
# spinning. A default run keeps 2 cores busy with 3 processes (the tests and two background jobs, tests/background.py),
# each with as many threads as cores (nnUNetv2_train -device cpu sets torch.set_num_threads(cpu_count())), and
# spinning threads then burn the CPU the other processes need: three concurrent 1-epoch trainings took 61 s each with
# spinning, 31 s with sleeping (and half the CPU time). Subprocesses inherit it (stock_env copies the environment).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import nnunet_ext

import background
from background import job

DATASET_ID = 991
DATASET_NAME = "SyntheticPancreas"


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
    whose workers re-import a console script's main module (all of nnunetv2's training code, ~2.5 s of CPU each) but
    not a ``-c`` one's, and a training or prediction starts two of them (14 % of a tiny training's CPU time).
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


@pytest.fixture(scope="session")
def meta_model():
    """``meta_model(name, **overrides)``: the registry's default construction of ``name`` on the meta device (shapes,
    no storage), built at most once per test run and shared (:func:`nnunet_ext.architectures.meta_model`). For
    parameter counts and structure checks of the paper-size networks (1.3 G parameters in all); do not modify it."""
    from nnunet_ext import architectures as A

    return A.meta_model


def n_trainable(net) -> int:
    """Trainable parameters, counted here independently of the registry's ``count_parameters``."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


@job(cost=21)
def nnunet_dataset(tmp):
    """Synthetic dataset 991 (6 training cases, 2 test cases), planned and preprocessed for 2d and 3d_fullres by
    ``nnUNetv2_plan_and_preprocess``, with nnU-Net's own 5-fold split written up front (the first training would
    write it; jobs train concurrently). Returns a namespace with the folders, ``env`` and ``dataset_id``."""
    from nnunet_ext.data.synthetic import make_dataset
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    base = tmp / "nnunet"
    raw, pre, res = base / "raw", base / "preprocessed", base / "results"
    for p in (raw, pre, res):
        p.mkdir(parents=True)
    folder = make_dataset(raw, dataset_id=DATASET_ID, name=DATASET_NAME, num_cases=6, num_test_cases=2, seed=0)
    env = stock_env(raw, pre, res)
    # nnU-Net 2.8.1's planner calls torch.set_num_threads(nnUNet_n_proc_DA), which fails for 0: plan with 1
    run(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "2d", "3d_fullres", "-np", "1", "-npfp", "1",
         "--verify_dataset_integrity"], {**env, "nnUNet_n_proc_DA": "1"})
    cases = sorted(p.name[: -len("_0000.nii.gz")] for p in (folder / "imagesTr").glob("*_0000.nii.gz"))
    splits = pre / folder.name / "splits_final.json"
    splits.write_text(json.dumps(generate_crossval_split(cases, seed=12345, n_splits=5), indent=2))  # = do_split's
    return SimpleNamespace(base=base, raw=raw, preprocessed=pre, results=res, env=env, dataset_id=DATASET_ID,
                           dataset_folder=folder, images_ts=folder / "imagesTs", labels_ts=folder / "labelsTs",
                           plans_file=pre / folder.name / "nnUNetPlans.json")


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: start only what the selected tests need
def pytest_collection_modifyitems(session, config, items):
    background.schedule(config, items)


def pytest_sessionfinish(session, exitstatus):
    background.shutdown()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if config.getoption("durations", None) is not None:
        background.report(terminalreporter)


def train(ds, trainer: str, configuration: str, fold: int = 0, extra: Optional[List[str]] = None,
          plans: str = "nnUNetPlans", console: bool = False):
    """Stock ``nnUNetv2_train`` on the CPU (:func:`run`); returns the fold's output folder. A model that several tests
    use is trained once, by a :func:`job` (e.g. ``plain_unet_3d``), not by each test."""
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
    CPU test (e.g. DMC-Net 2d on the dataset's 2d plans: 5 stages up to 512 features, ~5x stock's FLOPs)."""
    import json

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
    tmp = target.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")  # jobs write it concurrently
    tmp.write_text(json.dumps(plans, indent=2))
    os.replace(tmp, target)
    return name


# ------------------------------------------------------------------------------------------ models several tests use
PLAIN_3D = "nnUNetTrainerPlainUNet_1epoch_4iters"
#: the family end-to-end runs (ResDSN, DLKUNet, DMC-Net) train on :func:`small_plans` (patch 16x48x48 / 48x48,
#: features 8-32, same spacing and preprocessed data): what they test is nnU-Net's machinery around our trainers, and
#: the dataset's own 3d_fullres network (5 stages up to 320 features) made each training ~3x the CPU time. The shared
#: C2F pair (plain_unet_3d, c2f_fine_3d) stays on the dataset's own plans: with the small-plans pair, whose coarse
#: boxes vary from case to case, test_long_runs' RSS floor moved by 45 MiB over 8 cases in a CI run (flat over 24
#: cases in a quiet run: allocator steps, not a leak), beyond its 32 MiB tolerance.
SMALL_3D = "nnUNetPlans_small3d"
SMALL_2D = "nnUNetPlans_small2d"


def shared_small_plans(ds, configuration: str) -> str:
    """The small plans the end-to-end tests share: :data:`SMALL_3D` for 3d_fullres, :data:`SMALL_2D` (patch 48x48)
    for 2d; written (again, atomically, same content) by each job that uses them."""
    if configuration == "3d_fullres":
        return small_plans(ds, SMALL_3D)
    return small_plans(ds, SMALL_2D, patch=(48, 48), configuration="2d")


@job("nnunet_dataset", cost=60)
def plain_unet_3d(ds, tmp):
    """``nnUNetTrainerPlainUNet_1epoch_4iters`` 3d_fullres fold 0 by the stock ``nnUNetv2_train`` console script
    (with nnU-Net's final validation, mirroring on): test_end_to_end's model and the coarse model of the C2F tests."""
    return train(ds, PLAIN_3D, "3d_fullres", console=True)


@job("nnunet_dataset", cost=55)
def c2f_fine_3d(ds, tmp):
    """``nnUNetTrainerPlainUNet_fine_1epoch_4iters`` 3d_fullres fold 0: the fine model of the C2F tests."""
    return train(ds, "nnUNetTrainerPlainUNet_fine_1epoch_4iters", "3d_fullres")


def spec_of(fold_dir: Path) -> str:
    """``TRAINER:CONFIGURATION:PLANS`` of a trained fold folder (``.../TRAINER__PLANS__CONFIGURATION/fold_K``)."""
    trainer, plans, configuration = fold_dir.parent.name.split("__")
    return f"{trainer}:{configuration}:{plans}"


@pytest.fixture(scope="session")
def c2f_models(plain_unet_3d, c2f_fine_3d):
    """The C2F pair: ``coarse`` and ``fine`` as ``TRAINER:CONFIGURATION:PLANS`` specs, ``coarse_dir`` and
    ``fine_dir`` their model folders (``TRAINER__PLANS__CONFIGURATION``)."""
    return SimpleNamespace(coarse=spec_of(plain_unet_3d), fine=spec_of(c2f_fine_3d), coarse_dir=plain_unet_3d.parent,
                           fine_dir=c2f_fine_3d.parent)


@job("nnunet_dataset", cost=58)
def monet_2d_run(ds, tmp):
    """``nnUNetTrainerMoNet_1epoch_4iters`` 2d fold 0 by the stock ``nnUNetv2_train``, then ``nnUNetv2_predict
    --save_probabilities`` of the test images: (fold folder, prediction folder), for test_monet and (the reference
    of) test_slice_predictor."""
    trainer = "nnUNetTrainerMoNet_1epoch_4iters"
    fold_dir = train(ds, trainer, "2d")
    return fold_dir, predict(ds, trainer, "2d", tmp / "stock", extra=["--save_probabilities"])
