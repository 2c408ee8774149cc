"""The fit check our trainers run when training starts on CUDA (nnunet_ext.plans.fit), on the CPU with a mocked
device memory: stop with one line and the fix commands, warn over the plans' target, skip by environment."""
import copy

import pytest
import torch


def _trainer(cls_name: str, patch=(40, 224, 224), batch=2, target=None):
    from nnunet_ext.plans.synth import explicit_plans
    from nnunet_ext.trainers import get_trainer

    plans, dataset_json, conf = explicit_plans(patch, batch, spacing=(2.5, 0.8, 0.8) if len(patch) == 3 else None)
    plans["dataset_name"] = "Dataset017_Pancreas"
    plans["continue_training"] = False  # nnUNetTrainer.__init__ pops it (nnU-Net's run_training sets it)
    if target is not None:
        plans["nnunet_ext"] = {"gpu_memory_target_in_gb": target}
    return get_trainer(cls_name)(plans=plans, configuration=conf, fold=3, dataset_json=dataset_json,
                                 device=torch.device("cpu"))


@pytest.fixture(autouse=True)
def _results(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_results", str(tmp_path))  # nnUNetTrainer.__init__ makes its log folder there
    monkeypatch.delenv("nnUNet_ext_skip_memory_check", raising=False)


def test_over_the_device_stops_with_one_line_and_the_fix(capsys):
    from nnunet_ext.plans.fit import GPUMemoryError, check_trainer_fits, estimate_trainer_memory

    tr = _trainer("nnUNetTrainerDMCNet")
    est = estimate_trainer_memory(tr)["gpu_gb"]
    assert est > 8  # DMC-Net on stock pancreas plans: far beyond nnU-Net's 8 GB
    with pytest.raises(GPUMemoryError) as e:
        check_trainer_fits(tr, total_memory_bytes=int(24e9))
    assert e.value.code == 2
    msg = str(e.value)
    assert "\n" not in msg and f"{est:.1f} GB" in msg and "24.0 GB" in msg
    assert "nnunet-ext plan -d 17 --arch dmcnet_3d --gpu-memory-target 24" in msg
    assert "-p nnUNetPlans_dmcnet_3d" in msg and "nnUNet_ext_skip_memory_check=1" in msg
    assert capsys.readouterr().err.strip() == msg


def test_warning_over_the_plans_target_and_silence_within():
    from nnunet_ext.plans.fit import check_trainer_fits, estimate_trainer_memory

    tr = _trainer("nnUNetTrainerPlainUNet", target=2)
    est = estimate_trainer_memory(tr)["gpu_gb"]
    assert 2 < est < 80
    lines = []
    line = check_trainer_fits(tr, total_memory_bytes=int(80e9), warn=lines.append)
    assert lines == [line] and "warning:" in line and "the 2 GB its plans were made for" in line
    tr = _trainer("nnUNetTrainerPlainUNet", target=est + 1)
    assert check_trainer_fits(tr, total_memory_bytes=int(80e9), warn=lines.append) is None and len(lines) == 1


def test_2d_dmc_trainer_names_its_2d_network():
    from nnunet_ext.plans.fit import GPUMemoryError, check_trainer_fits

    tr = _trainer("nnUNetTrainerDMCNet", patch=(512, 512), batch=12)
    with pytest.raises(GPUMemoryError, match="--arch dmcnet_2d .*-p nnUNetPlans_dmcnet_2d"):
        check_trainer_fits(tr, total_memory_bytes=int(1e9))


def test_estimate_equals_the_planners_on_its_own_plans():
    """Fit by construction: the trainer's estimate on plans the planner made is the planner's figure."""
    from nnunet_ext.architectures import to_plans_entry
    from nnunet_ext.plans.fit import estimate_trainer_memory
    from nnunet_ext.plans.planner import training_memory

    tr = _trainer("nnUNetTrainerDLKUNetS", patch=(24, 112, 112))
    plans = copy.deepcopy(tr.plans_manager.plans)
    plans["continue_training"] = False
    conf = plans["configurations"]["3d_fullres"]
    conf["architecture"] = to_plans_entry("dlkunet_s", conf["architecture"]["arch_kwargs"])
    planner_gb = training_memory("dlkunet_s", conf["architecture"]["arch_kwargs"], conf["patch_size"],
                                 conf["batch_size"])["gpu_gb"]
    from nnunet_ext.trainers import nnUNetTrainerDLKUNetS

    tr2 = nnUNetTrainerDLKUNetS(plans=plans, configuration="3d_fullres", fold=0,
                                dataset_json=tr.dataset_json, device=torch.device("cpu"))
    assert estimate_trainer_memory(tr2)["gpu_gb"] == pytest.approx(planner_gb, rel=1e-6)


class _Props:
    total_memory = int(4e9)


def test_on_train_start_checks_on_cuda_and_the_variable_skips(monkeypatch):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_ext.plans.fit import GPUMemoryError

    started = []
    monkeypatch.setattr(nnUNetTrainer, "on_train_start", lambda self: started.append(True))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: _Props())
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    tr = _trainer("nnUNetTrainerDMCNet")
    tr.on_train_start()  # CPU: no check
    assert started == [True]
    tr.device = torch.device("cuda")  # as if on a 4 GB GPU (nothing is allocated before the check)
    with pytest.raises(GPUMemoryError):
        tr.on_train_start()
    assert started == [True]
    monkeypatch.setenv("nnUNet_ext_skip_memory_check", "1")
    tr.on_train_start()
    assert started == [True, True]
