"""Session fixtures: a tiny synthetic dataset planned and preprocessed once per test run with the STOCK nnU-Net
commands, and the models several tests share, each built once per run across pytest-xdist's workers
(:func:`tests.helpers.shared`). The default run distributes the tests over two workers (pyproject ``addopts``:
``--numprocesses=2 --dist=loadgroup``); tests that use the same heavy model carry the same ``xdist_group`` mark so
that one worker builds it while the other runs other tests. ``-n 0`` or ``-p no:xdist`` runs everything in one
process (docs/testing.md)."""
from __future__ import annotations

import json
import os

# Before anything loads torch's OpenMP runtime (read once, at load): threads that wait for work sleep instead of
# spinning, and each of N xdist workers takes 1/N of the cores (subprocesses inherit both: stock_env copies the
# environment).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402

from tests.helpers import (DATASET_ID, DATASET_NAME, PLAIN_3D, predict, run, shared, shared_small_plans,  # noqa: E402
                           spec_of, stock_env, train)


def pytest_addoption(parser, pluginmanager):
    """Without pytest-xdist (``-p no:xdist``, or not installed) the ``addopts`` options are accepted and ignored."""
    if not pluginmanager.has_plugin("xdist"):
        parser.addoption("--numprocesses", default=None, help="(pytest-xdist is not loaded: ignored)")
        parser.addoption("--dist", default="no", help="(pytest-xdist is not loaded: ignored)")


@pytest.fixture(scope="session")
def meta_model():
    """``meta_model(name, **overrides)``: the registry's default construction of ``name`` on the meta device (shapes,
    no storage), built at most once per process and shared (:func:`nnunet_ext.architectures.meta_model`). For
    parameter counts and structure checks of the paper-size networks; do not modify it."""
    from nnunet_ext import architectures as A

    return A.meta_model


@shared()
def nnunet_dataset(tmp):
    """Synthetic dataset 991 (6 training cases, 2 test cases), planned and preprocessed for 2d and 3d_fullres by
    ``nnUNetv2_plan_and_preprocess``, with nnU-Net's own 5-fold split written up front (the first training would
    write it; models train concurrently) and the shared small plans (helpers.shared_small_plans: no test writes them
    into the folder later). Returns a namespace with the folders, ``env`` and ``dataset_id``."""
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
    ds = SimpleNamespace(base=base, raw=raw, preprocessed=pre, results=res, env=env, dataset_id=DATASET_ID,
                         dataset_folder=folder, images_ts=folder / "imagesTs", labels_ts=folder / "labelsTs",
                         plans_file=pre / folder.name / "nnUNetPlans.json")
    for configuration in ("3d_fullres", "2d"):
        shared_small_plans(ds, configuration)
    return ds


# ------------------------------------------------------------------------------------------ models several tests use
@shared("nnunet_dataset")
def plain_unet_3d(ds, tmp):
    """``nnUNetTrainerPlainUNet_1epoch_4iters`` 3d_fullres fold 0 by the stock ``nnUNetv2_train`` console script
    (with nnU-Net's final validation, mirroring on): test_end_to_end's model and the coarse model of the C2F tests
    (xdist group ``c2f_pair``)."""
    return train(ds, PLAIN_3D, "3d_fullres", console=True)


@shared("nnunet_dataset")
def c2f_fine_3d(ds, tmp):
    """``nnUNetTrainerPlainUNet_fine_1epoch_4iters`` 3d_fullres fold 0: the fine model of the C2F tests (xdist group
    ``c2f_pair``)."""
    return train(ds, "nnUNetTrainerPlainUNet_fine_1epoch_4iters", "3d_fullres")


@pytest.fixture(scope="session")
def c2f_models(plain_unet_3d, c2f_fine_3d):
    """The C2F pair: ``coarse`` and ``fine`` as ``TRAINER:CONFIGURATION:PLANS`` specs, ``coarse_dir`` and
    ``fine_dir`` their model folders (``TRAINER__PLANS__CONFIGURATION``)."""
    return SimpleNamespace(coarse=spec_of(plain_unet_3d), fine=spec_of(c2f_fine_3d), coarse_dir=plain_unet_3d.parent,
                           fine_dir=c2f_fine_3d.parent)


@shared("nnunet_dataset")
def monet_2d_run(ds, tmp):
    """``nnUNetTrainerMoNet_1epoch_4iters`` 2d fold 0 by the stock ``nnUNetv2_train``, then ``nnUNetv2_predict
    --save_probabilities`` of the test images: (fold folder, prediction folder), for test_monet and (the reference
    of) test_slice_predictor (xdist group ``monet_2d``)."""
    trainer = "nnUNetTrainerMoNet_1epoch_4iters"
    fold_dir = train(ds, trainer, "2d")
    return fold_dir, predict(ds, trainer, "2d", tmp / "stock", extra=["--save_probabilities"])
