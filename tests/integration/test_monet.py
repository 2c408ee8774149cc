"""MoNet with nnU-Net: the trainers on the test dataset's plans, the stock nnUNetv2_train / nnUNetv2_predict in 2d, and
the CPU speed benchmark's smoke run."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnunet_ext.trainers.monet import ValLossPlateau, nnUNetTrainerMoNet, nnUNetTrainerMoNetPaper
from tests.helpers import assert_predictions_match_inputs

REPO = Path(__file__).resolve().parents[2]


def _trainer(ds, cls):
    plans = json.loads(ds.plans_file.read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((ds.plans_file.parent / "dataset.json").read_text())
    return cls(plans, "2d", 0, dataset_json, device=torch.device("cpu")), plans


def test_trainers_on_real_plans(nnunet_dataset, monkeypatch, tmp_path):
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_preprocessed", str(nnunet_dataset.preprocessed))
    tr, plans = _trainer(nnunet_dataset, nnUNetTrainerMoNetPaper)
    assert plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["n_stages"] > 3  # really trimmed
    assert len(tr.configuration_manager.pool_op_kernel_sizes) == 3
    tr.network = tr.build_network_architecture(tr.plans_manager, tr.configuration_manager, 1,
                                               tr.label_manager.num_segmentation_heads, True)
    patch = tr.configuration_manager.patch_size
    out = tr.network(torch.randn(2, 1, *patch))
    scales = tr._get_deep_supervision_scales()
    assert [tuple(o.shape[2:]) for o in out] == [tuple(int(round(p * s)) for p, s in zip(patch, sc)) for sc in scales]
    opt, sched = tr.configure_optimizers()
    assert isinstance(opt, torch.optim.NAdam) and opt.param_groups[0]["lr"] == 5e-4
    assert isinstance(sched, ValLossPlateau)
    loss = tr._build_loss()
    assert loss.loss.weight_ce == 0 and loss.loss.weight_dice == 1
    target = [torch.randint(0, 3, (2, 1, *o.shape[2:])).float() for o in out]
    value = loss(out, target)
    assert torch.isfinite(value) and value.item() < 0  # nnU-Net's soft Dice loss is -Dice
    # nnU-Net's recipe: SGD + poly LR, Dice + CE
    tr2, _ = _trainer(nnunet_dataset, nnUNetTrainerMoNet)
    tr2.network = tr.network
    assert isinstance(tr2.configure_optimizers()[0], torch.optim.SGD)
    assert tr2._build_loss().loss.weight_ce == 1


@pytest.mark.xdist_group("monet_2d")
def test_train_and_predict_2d(nnunet_dataset, monet_2d_run):
    fold_dir, out = monet_2d_run  # stock nnUNetv2_train + nnUNetv2_predict (conftest)
    saved = json.loads((fold_dir.parent / "plans.json").read_text())
    assert saved["configurations"]["2d"]["architecture"]["arch_kwargs"]["n_stages"] == 3
    assert_predictions_match_inputs(out, nnunet_dataset.images_ts)


def test_cpu_speed_benchmark_smoke(tmp_path):
    """The benchmark runs end to end at a tiny size (timings are printed, not asserted)."""
    res = tmp_path / "t.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "monet_cpu_speed.py"), "--slices", "2",
                           "--size", "32", "--repeats", "1", "--threads", "1", "--warmup-slices", "1",
                           "--json", str(res)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "speed-up monet vs stock 2d, engine nnunet, mirroring off" in proc.stdout
    assert "engine slices vs nnunet, monet, mirroring on" in proc.stdout
    data = json.loads(res.read_text())
    assert set(data["times"]) == {f"{e}/{a}/mirroring_{m}" for e in ("nnunet", "slices") for a in ("stock", "monet")
                                  for m in ("on", "off")}
    assert all(0 < f <= t for k in data["times"] for f, t in zip(data["forward_s"][k], data["times"][k]))
    assert data["params"]["monet"] < data["params"]["stock"]

