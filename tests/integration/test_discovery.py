"""The stock nnU-Net lookup finds our trainers through ``nnUNet_extTrainer`` (as set by ``nnunet-ext env``), as the
very class objects of ``nnunet_ext.trainers``, picklable; the ``env`` line works in bash; suffixes apply to the
instances nnU-Net builds (names alone: tests/unit/test_discovery.py)."""
import json
import os
import subprocess
import sys


import nnunet_ext
from nnunet_ext import trainers

_CHILD = r"""
import importlib, json, os, pickle, pkgutil, sys
import nnunetv2
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
import nnunet_ext.trainers as T
names, sample = json.loads(sys.stdin.read())
bad = []
# nnU-Net's lookup walks its own trainer folder first and takes the first module with an attribute of that name:
# none of our names may be an attribute of any of its modules (then the walk misses every one of them) ...
stock = os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer")
attrs = set()
for info in pkgutil.walk_packages([stock], "nnunetv2.training.nnUNetTrainer."):
    if not info.ispkg:
        attrs |= set(dir(importlib.import_module(info.name)))
bad += [f"{n}: also an attribute of nnU-Net's trainer modules" for n in sorted(set(names) & attrs)]
# ... and then imports the modules of the nnUNet_extTrainer folder and takes the first with that attribute (~0.08 s
# a name: it scans sys.modules around each search): every name must give our very class from the shim
ext = os.environ["nnUNet_extTrainer"]
sys.path.insert(0, ext)
shims = [importlib.import_module(m.name) for m in pkgutil.iter_modules([ext]) if not m.ispkg]
sys.path.remove(ext)
def check(n, cls):
    if cls is not getattr(T, n):
        bad.append(f"{n}: not the class of nnunet_ext.trainers ({getattr(cls, '__module__', cls)})")
    elif pickle.loads(pickle.dumps(cls)) is not cls:
        bad.append(f"{n}: does not pickle by reference")
for n in names:
    check(n, next((getattr(m, n) for m in shims if hasattr(m, n)), None))
# the whole stock lookup (both walks) for a sample: one name per family, short schedules
for n in sample:
    check(n, recursive_find_trainer_class_by_name(n))
print(json.dumps(bad))
"""


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet")}
    env.update(extra)
    return env


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "nnunet_ext.cli", *args], capture_output=True, text=True,
                          env=env or os.environ.copy())


def test_stock_lookup_finds_every_listed_trainer():
    """Every listed trainer, found by nnU-Net's lookup (recursive_find_trainer_class_by_name: its own trainer folder,
    then nnUNet_extTrainer), is the class of nnunet_ext.trainers. The lookup depends on the name only through
    ``hasattr`` on the modules it imports (~0.09 s a name, 279 names): that is checked for every name at once (no name
    is an attribute of nnU-Net's trainer modules; the modules of the nnUNet_extTrainer folder give our class), and the
    whole lookup runs for one name per family and three dynamic names (schedules, a loss schedule)."""
    listed = _cli("trainers", "--all").stdout.split()
    assert set(trainers.exported_trainers()) <= set(listed)
    # dynamic names (made on lookup): a schedule, a short schedule, a loss schedule with a short schedule
    dynamic = ["nnUNetTrainerPlainUNet_3epochs_7iters", "nnUNetTrainerPlainUNet_1epoch",
               "nnUNetTrainerDLKUNetS_dynloss_1epoch_4iters"]
    names = listed + dynamic
    families = {}
    for n in listed:
        families.setdefault(getattr(trainers, n).__module__, n)
    sample = sorted(families.values()) + dynamic
    assert len(sample) >= 8
    env = _clean_env(nnUNet_extTrainer=nnunet_ext.EXT_TRAINER_DIR)
    proc = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps([names, sample]), capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_env_line_works_in_bash():
    line = _cli("env").stdout.strip()
    assert line.startswith("export nnUNet_extTrainer=")
    for before, expected_tail in (("", ""), ("/some/other/dir", os.pathsep + "/some/other/dir")):
        env = _clean_env(**({"nnUNet_extTrainer": before} if before else {}))
        out = subprocess.run(["bash", "-c", f'eval "{line}"; printf %s "$nnUNet_extTrainer"'], capture_output=True,
                             text=True, env=env).stdout
        assert out == nnunet_ext.EXT_TRAINER_DIR + expected_tail


def test_nomirror_suffix_is_nnunets_no_mirroring(nnunet_dataset, monkeypatch):
    """``_nomirror`` = nnU-Net's nnUNetTrainerNoMirroring on any base: no mirror axes in training or inference."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import \
        nnUNetTrainerNoMirroring
    import torch

    monkeypatch.setenv("nnUNet_results", str(nnunet_dataset.base / "hp_results"))
    plans = load_json(str(nnunet_dataset.plans_file))
    ds_json = load_json(str(nnunet_dataset.dataset_folder / "dataset.json"))
    for conf, axes in (("3d_fullres", (0, 1, 2)), ("2d", (0, 1))):
        for name, expected in (("nnUNetTrainerResDSN_1epoch", axes), ("nnUNetTrainerResDSN_nomirror_1epoch", None),
                               ("nnUNetTrainer_nomirror_1epoch", None)):
            t = trainers.get_trainer(name)({**plans, "continue_training": False}, conf, 0, ds_json,
                                           torch.device("cpu"))
            *_, mirror_axes = t.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
            assert mirror_axes == expected and t.inference_allowed_mirroring_axes == expected, (name, conf)
        stock = nnUNetTrainerNoMirroring({**plans, "continue_training": False}, conf, 0, ds_json, torch.device("cpu"))
        assert stock.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[-1] is None


def test_hparams_are_applied_to_the_instance(nnunet_dataset):
    """hparams of a trainer built by name reach the nnU-Net trainer instance (on real plans)."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    import torch

    plans = load_json(str(nnunet_dataset.plans_file))
    plans["continue_training"] = False
    ds_json = load_json(str(nnunet_dataset.dataset_folder / "dataset.json"))
    old = os.environ.get("nnUNet_results")
    os.environ["nnUNet_results"] = str(nnunet_dataset.base / "hp_results")
    try:
        cls = trainers.get_trainer("nnUNetTrainerPlainUNet_3epochs_10iters")
        t = cls(plans, "2d", 0, ds_json, torch.device("cpu"))
    finally:
        if old is None:
            os.environ.pop("nnUNet_results")
        else:
            os.environ["nnUNet_results"] = old
    assert (t.num_epochs, t.num_iterations_per_epoch, t.num_val_iterations_per_epoch) == (3, 10, 2)
    assert t.my_init_kwargs["configuration"] == "2d"  # nnU-Net's explicit signature is kept
