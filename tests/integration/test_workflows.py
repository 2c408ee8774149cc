"""nnU-Net's own workflows with one of our trainers, on the tiny dataset of the session fixture (6 training cases, so
five folds), CPU, 2 epochs of 2 iterations, a checkpoint every epoch (``_save1``):

* cross-validation of ``nnUNetTrainerMoNet`` with the validation probabilities (``--npz``), without test-time
  mirroring (``_nomirror``: nothing here depends on it; test_end_to_end and test_monet validate with it); folds in one
  python process calling nnU-Net's ``run_training`` (the import cost is paid once, and its export and evaluation
  pools fork from it instead of spawning two fresh interpreters per fold), except one fold of ours, which is trained
  by the stock ``nnUNetv2_train``, killed (SIGKILL) in its second epoch and resumed with ``--c``. By default two folds
  of ours (one the killed one); ``-m slow``: all five, and the five of stock ``nnUNetTrainer`` on the same schedule;
* ``nnUNetv2_train --val`` on a finished fold of ours;
* ``nnUNetv2_ensemble`` of the ``nnUNetv2_predict --save_probabilities`` of two folds of ours; ``-m slow``:
  ``nnUNetv2_find_best_configuration`` with both trainers named (``-tr``), then the inference it prescribes:
  ``nnUNetv2_predict --save_probabilities`` of both models (fold 0), ``nnUNetv2_ensemble``,
  ``nnUNetv2_apply_postprocessing`` with the chosen ``postprocessing.pkl``.

Every step but the fold loop is the stock console command a user types."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.helpers import assert_predictions_match_inputs, run, shared, small_plans

pytestmark = pytest.mark.xdist_group("preprocessed")  # writes plans into the dataset's preprocessed folder

OURS = "nnUNetTrainerMoNet_nomirror_2epochs_2iters_save1"
STOCK = "nnUNetTrainer_nomirror_2epochs_2iters_save1"
CONF = "2d"
# the dataset's 2d plans with narrow features (8, 16, 32; same patch, spacing and preprocessed data): nnU-Net's
# workflows are what is tested here, and stock's 2d network (up to 512 features) made this module the slowest
PLANS = "nnUNetPlans_workflows2d"
FOLDS = (0, 1, 2, 3, 4)
KILLED_FOLD = 4  # fold of ours that is killed mid-way and resumed
SAVE_EVERY = 1  # the _save1 suffix
VAL_FOLD = 1  # fold of ours validated again with --val (one validation case: 6 cases in 5 folds)

# nnU-Net's own run_training per fold, in one process; argv: dataset, then TRAINER:FOLD ... nnU-Net's "spawn" pools
# (validation export, evaluation) fork from this process instead: two fresh interpreters per fold re-importing
# nnU-Net were a third of this process's CPU time; forking is safe with torch on one thread
_FOLDS_DRIVER = """
import multiprocessing, sys, torch
_context = multiprocessing.get_context
multiprocessing.get_context = lambda method=None: _context("fork" if method == "spawn" else method)
torch.set_num_threads(1)
from nnunetv2.run.run_training import run_training
for spec in sys.argv[2:]:
    trainer, fold = spec.rsplit(":", 1)
    run_training(sys.argv[1], %r, int(fold), trainer, %r, export_validation_probabilities=True,
                 device=torch.device("cpu"))
""" % (CONF, PLANS)

_EPOCH_LINE = re.compile(r": Epoch (\d+)\s*$", re.M)


def _model_dir(ds, trainer):
    return ds.results / ds.dataset_folder.name / f"{trainer}__{PLANS}__{CONF}"


def _epochs_logged(log: Path):
    return [int(m) for m in _EPOCH_LINE.findall(log.read_text())]


def _train_killed_then_resumed(ds, trainer, fold, tmp):
    """Stock ``nnUNetv2_train`` killed with SIGKILL once it logs its second epoch, then resumed with ``--c``."""
    import torch

    fold_dir = _model_dir(ds, trainer) / f"fold_{fold}"
    exe = str(Path(sys.executable).parent / "nnUNetv2_train")
    cmd = [exe, str(ds.dataset_id), CONF, str(fold), "-tr", trainer, "-p", PLANS, "-device", "cpu", "--npz"]
    with open(tmp / "killed.log", "w") as out:
        proc = subprocess.Popen(cmd, env=ds.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 900
        killed_log = None
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                logs = sorted(fold_dir.glob("training_log_*.txt"))
                if logs and any(e >= 1 for e in _epochs_logged(logs[-1])):
                    killed_log = logs[-1]
                    break
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert killed_log is not None, f"training never reached epoch 1:\n{(tmp / 'killed.log').read_text()[-3000:]}"
    assert proc.returncode == -signal.SIGKILL
    assert not (fold_dir / "checkpoint_final.pth").exists(), "killed too late: the training had finished"
    latest = torch.load(fold_dir / "checkpoint_latest.pth", map_location="cpu", weights_only=False)
    killed = SimpleNamespace(last_epoch=max(_epochs_logged(killed_log)), checkpoint_epoch=latest["current_epoch"],
                             train_losses=list(latest["logging"]["train_losses"]))
    time.sleep(1.1)  # nnU-Net names its log files by the second
    run(["nnUNetv2_train", str(ds.dataset_id), CONF, str(fold), "-tr", trainer, "-p", PLANS, "-device", "cpu",
         "--npz", "--c"], ds.env)
    resumed_log = [p for p in sorted(fold_dir.glob("training_log_*.txt")) if p != killed_log]
    assert len(resumed_log) == 1
    final = torch.load(fold_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    return SimpleNamespace(killed=killed, resumed_epochs=_epochs_logged(resumed_log[0]), final=final,
                           fold_dir=fold_dir)


@shared("nnunet_dataset")
def cv(ds, tmp):
    """Fold VAL_FOLD of ours (nnU-Net's run_training) and fold KILLED_FOLD of ours killed and resumed: the default
    run's cross-validation (the other folds, and stock nnU-Net's: :func:`cv_all_folds`)."""
    patch = json.loads(ds.plans_file.read_text())["configurations"][CONF]["patch_size"]
    small_plans(ds, PLANS, patch=tuple(patch), configuration=CONF)
    run([sys.executable, "-c", _FOLDS_DRIVER, str(ds.dataset_id), f"{OURS}:{VAL_FOLD}"], ds.env, timeout=3600)
    resume = _train_killed_then_resumed(ds, OURS, KILLED_FOLD, tmp)
    return SimpleNamespace(ds=ds, resume=resume)


@shared("cv")
def cv_all_folds(cv, tmp):
    """The other folds of ours and the five folds of stock nnU-Net (one process): five folds of each (``-m slow``)."""
    ds = cv.ds
    specs = [f"{OURS}:{f}" for f in FOLDS if f not in (VAL_FOLD, KILLED_FOLD)] + [f"{STOCK}:{f}" for f in FOLDS]
    run([sys.executable, "-c", _FOLDS_DRIVER, str(ds.dataset_id), *specs], ds.env, timeout=3600)
    for tr in (OURS, STOCK):
        for f in FOLDS:
            assert (_model_dir(ds, tr) / f"fold_{f}" / "checkpoint_final.pth").is_file()
    return cv


def test_resume_with_c_loses_at_most_one_checkpoint_interval(cv):
    r = cv.resume
    # the killed run was in epoch 1 (>= one checkpoint written); what it had not checkpointed is < one interval
    assert r.killed.last_epoch >= 1 and r.killed.checkpoint_epoch >= 1
    assert 0 <= r.killed.last_epoch - r.killed.checkpoint_epoch < SAVE_EVERY
    # --c starts at the checkpoint's epoch, not at 0, and runs to the end of the schedule
    assert r.resumed_epochs and r.resumed_epochs[0] == r.killed.checkpoint_epoch
    assert r.resumed_epochs[-1] == r.final["current_epoch"] - 1 == 1
    # the epochs before the checkpoint were carried over from it, not trained again
    losses = r.final["logging"]["train_losses"]
    assert len(losses) == 2
    assert losses[:r.killed.checkpoint_epoch] == r.killed.train_losses[:r.killed.checkpoint_epoch]
    assert (r.fold_dir / "validation" / "summary.json").is_file()


@shared("cv")
def val_run(cv, tmp):
    """``nnUNetv2_train --val --npz`` on fold VAL_FOLD of ours, after removing its validation summary and npz files:
    (summary before, npz files before, summary after)."""
    ds = cv.ds
    fold_dir = _model_dir(ds, OURS) / f"fold_{VAL_FOLD}"
    summary = fold_dir / "validation" / "summary.json"
    before = json.loads(summary.read_text())
    summary.unlink()
    npz = sorted((fold_dir / "validation").glob("*.npz"))
    for p in npz:
        p.unlink()
    run(["nnUNetv2_train", str(ds.dataset_id), CONF, str(VAL_FOLD), "-tr", OURS, "-p", PLANS, "-device", "cpu",
         "--val", "--npz"], ds.env)
    return SimpleNamespace(before=before, npz=npz, after=json.loads(summary.read_text()), fold_dir=fold_dir)


def test_val_on_a_finished_fold_of_ours(val_run):
    before, npz, after, fold_dir = val_run.before, val_run.npz, val_run.after, val_run.fold_dir
    assert npz, "the cross-validation was run with --npz"
    # the same checkpoint, the same validation cases: the same scores
    assert [c["reference_file"] for c in after["metric_per_case"]] == \
           [c["reference_file"] for c in before["metric_per_case"]]
    assert np.isclose(after["foreground_mean"]["Dice"], before["foreground_mean"]["Dice"], equal_nan=True)
    assert sorted((fold_dir / "validation").glob("*.npz")) == npz


@shared("cv", "val_run")
def ensemble_run(cv, val, tmp):
    """``nnUNetv2_predict --save_probabilities`` of the test images with folds VAL_FOLD and KILLED_FOLD of ours, then
    ``nnUNetv2_ensemble`` of the two: the default run's ensembling (after val_run, which validates fold VAL_FOLD
    again; :func:`best_run` ensembles two trainers, ``-m slow``)."""
    ds = cv.ds
    preds = []
    for fold in (VAL_FOLD, KILLED_FOLD):
        out = tmp / f"pred_fold{fold}"
        run(["nnUNetv2_predict", "-i", str(ds.images_ts), "-o", str(out), "-d", str(ds.dataset_id), "-c", CONF,
             "-tr", OURS, "-p", PLANS, "-f", str(fold), "-device", "cpu", "-npp", "1", "-nps", "1",
             "--save_probabilities", "--disable_tta"], ds.env)
        preds.append(out)
    ens = tmp / "ensemble"
    run(["nnUNetv2_ensemble", "-i", *map(str, preds), "-o", str(ens), "-np", "1"], ds.env)
    return SimpleNamespace(preds=preds, ens=ens)


def _check_ensemble(images_ts: Path, preds, ens: Path) -> dict:
    """Every prediction and the ensemble match the inputs, and the ensemble is the argmax of the mean of the two
    models' probabilities; returns {case: ensemble segmentation}."""
    import SimpleITK as sitk

    for out in [*preds, ens]:
        assert_predictions_match_inputs(out, images_ts)
    segs = {}
    for img in sorted(images_ts.glob("*_0000.nii.gz")):
        case = img.name[: -len("_0000.nii.gz")]
        probs = [np.load(p / f"{case}.npz")["probabilities"].astype(np.float32) for p in preds]
        expected = np.argmax((probs[0] + probs[1]) / 2, axis=0)
        got = segs[case] = sitk.GetArrayFromImage(sitk.ReadImage(str(ens / f"{case}.nii.gz")))
        assert np.mean(got == expected) > 0.999, case
    return segs


def test_ensemble_of_two_folds_is_the_argmax_of_their_mean(cv, ensemble_run):
    _check_ensemble(cv.ds.images_ts, ensemble_run.preds, ensemble_run.ens)


@shared("cv_all_folds", "val_run")
def best_run(cv, val, tmp):
    """``nnUNetv2_find_best_configuration`` with both trainers (after val_run: both read fold VAL_FOLD's validation
    folder), then the inference it prescribes for an ensemble, for both models whatever it chose (one fold each:
    the ensembling is what is tested here, and 5-fold prediction would cost 5x on the CPU): ``nnUNetv2_predict
    --save_probabilities``, ``nnUNetv2_ensemble``, ``nnUNetv2_apply_postprocessing``."""
    ds = cv.ds
    results = ds.results / ds.dataset_folder.name
    run(["nnUNetv2_find_best_configuration", str(ds.dataset_id), "-c", CONF, "-tr", OURS, STOCK, "-p", PLANS,
         "-f", *map(str, FOLDS), "-np", "1"], ds.env)
    info = json.loads((results / "inference_information.json").read_text())
    best = info["best_model_or_ensemble"]
    preds = []
    for tr in (OURS, STOCK):
        out = tmp / f"pred_{tr}"
        run(["nnUNetv2_predict", "-i", str(ds.images_ts), "-o", str(out), "-d", str(ds.dataset_id), "-c", CONF,
             "-tr", tr, "-p", PLANS, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1",
             "--save_probabilities", "--disable_tta"], ds.env)
        preds.append(out)
    ens = tmp / "ensemble"
    run(["nnUNetv2_ensemble", "-i", *map(str, preds), "-o", str(ens), "-np", "1"], ds.env)
    pp = tmp / "ensemble_pp"
    run(["nnUNetv2_apply_postprocessing", "-i", str(ens), "-o", str(pp), "-pp_pkl_file", best["postprocessing_file"],
         "-np", "1", "-plans_json", best["some_plans_file"], "-dataset_json", str(ens / "dataset.json")], ds.env)
    return SimpleNamespace(info=info, preds=preds, ens=ens, pp=pp)


@pytest.mark.slow  # five folds of two trainers; test_ensemble_of_two_folds_is_the_argmax_of_their_mean by default
def test_find_best_configuration_ensemble_and_postprocessing(cv, best_run):
    ds = cv.ds
    info, preds, ens, pp = best_run.info, best_run.preds, best_run.ens, best_run.pp
    # both 5-fold models and their ensemble were scored on the merged cross-validation
    ids = {f"{tr}__{PLANS}__{CONF}" for tr in (OURS, STOCK)}
    assert ids <= set(info["all_results"])
    assert any(k.startswith("ensemble___") for k in info["all_results"])
    for tr in (OURS, STOCK):
        merged = _model_dir(ds, tr) / "crossval_results_folds_0_1_2_3_4"
        summary = json.loads((merged / "summary.json").read_text())
        assert len(summary["metric_per_case"]) == 6  # every training case validated exactly once
    best = info["best_model_or_ensemble"]
    pp_pkl = Path(best["postprocessing_file"])
    assert pp_pkl.is_file()

    import SimpleITK as sitk

    assert_predictions_match_inputs(pp, ds.images_ts)
    for case, got in _check_ensemble(ds.images_ts, preds, ens).items():
        # postprocessing only removes components: its foreground lies inside the ensemble's
        post = sitk.GetArrayFromImage(sitk.ReadImage(str(pp / f"{case}.nii.gz")))
        assert not np.any((post > 0) & (got == 0))
        assert np.all((post == got) | (post == 0))
