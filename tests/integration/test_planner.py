"""The memory-aware planner on the test dataset: nnU-Net reproduced at kappa = 1, patch shrinking with the budget,
``nnunet-ext plan`` plans that stock nnU-Net and our trainers build alike and train with, clear errors."""
import json

import numpy as np
import pytest

from tests.helpers import run

pytestmark = pytest.mark.xdist_group("preprocessed")  # lists the preprocessed folder while others write


PANCREAS_SPACING = (2.5, 0.8, 0.8)
PANCREAS_MEDIAN = (96, 512, 512)



@pytest.fixture
def planner_paths(nnunet_dataset, monkeypatch):
    """nnU-Net's folders (read from the environment when used) pointing at the test dataset, in this process."""
    for key in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"nnUNet_{key}", str(getattr(nnunet_dataset, key)))
    return nnunet_dataset


def _plan(planner, dim):
    spacing, median = (PANCREAS_SPACING, PANCREAS_MEDIAN) if dim == 3 else (PANCREAS_SPACING[1:], PANCREAS_MEDIAN[1:])
    n_vox = float(np.prod(PANCREAS_MEDIAN, dtype=np.float64) * 282)
    return planner.get_plans_for_configuration(spacing, median, "x", n_vox, {})


@pytest.mark.parametrize("dim", [2, 3])
def test_plain_unet_reproduces_nnunet_and_patch_shrinks_with_budget(planner_paths, dim):
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    from nnunet_ext.plans.planner import ArchitecturePlanner

    did = planner_paths.dataset_id
    # kappa = 1: the same patch, batch and topology as nnU-Net's own planner
    stock = _plan(ExperimentPlanner(did, 8), dim)
    ours = _plan(ArchitecturePlanner(did, 8, arch="plain_unet"), dim)
    assert list(ours["patch_size"]) == list(stock["patch_size"]) and ours["batch_size"] == stock["batch_size"]
    assert ours["architecture"]["network_class_name"] == stock["architecture"]["network_class_name"]

    for arch in ("dmcnet_3d", "dlkunet_s", "monet"):
        voxels = []
        for gb in (2, 4, 8, 16, 32):
            p = ArchitecturePlanner(did, gb, arch=arch)
            conf = _plan(p, dim)
            voxels.append(int(np.prod(conf["patch_size"])))
            # the planned configuration fits the budget by the planner's own estimate, up to the rounding of
            # nnU-Net's batch size (batch = round(x) with x >= batch - 0.5)
            b = conf["batch_size"]
            assert p.estimated_memory_gb(conf) <= gb * b / (b - 0.5) * 1.0001
            assert conf["architecture"]["network_class_name"].startswith("nnunet_ext.architectures.")
        assert voxels == sorted(voxels), f"{arch} {dim}d: patch must not grow as the budget shrinks: {voxels}"
        assert voxels[0] < voxels[-1], f"{arch} {dim}d: the budget changes nothing: {voxels}"


def test_kappa_changes_the_plan_against_stock(planner_paths):
    """An architecture with more memory per feature-map element gets a smaller 3d patch than at kappa = 1."""
    from nnunet_ext.plans.planner import ArchitecturePlanner

    did = planner_paths.dataset_id
    table = {"architectures": {"monet": {"3d": {"kappa": 1.0}}}}
    at_one = _plan(ArchitecturePlanner(did, 8, arch="monet", calibration=table), 3)
    calibrated = _plan(ArchitecturePlanner(did, 8, arch="monet"), 3)
    assert np.prod(calibrated["patch_size"]) < np.prod(at_one["patch_size"])


def test_plan_command_stock_and_our_trainer_build_it_and_train(nnunet_dataset):
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_ext.trainers import nnUNetTrainerDLKUNetS

    ds = nnunet_dataset
    data_before = sorted(p.name for p in (ds.preprocessed / ds.dataset_folder.name).iterdir())
    proc = run(["nnunet-ext", "plan", "-d", str(ds.dataset_id), "--arch", "dlkunet_s", "-c", "2d", "3d_fullres"],
               ds.env)
    assert "2d: reusing preprocessed data" in proc.stdout and "3d_fullres: reusing" in proc.stdout
    plans_file = ds.preprocessed / ds.dataset_folder.name / "nnUNetPlans_dlkunet_s.json"
    data_after = sorted(p.name for p in (ds.preprocessed / ds.dataset_folder.name).iterdir())
    # no data preprocessed twice: the same data folders; new files are plans only (the other tests that write plans
    # into this folder run in this worker: xdist group "preprocessed")
    new = set(data_after) - set(data_before)
    assert plans_file.name in new and all(n.startswith("nnUNetPlans_") and n.endswith(".json") for n in new), new
    assert {n for n in data_after if not n.endswith(".json")} == {n for n in data_before if not n.endswith(".json")}
    plans = load_json(str(plans_file))
    assert plans["nnunet_ext"]["architecture"] == "dlkunet_s"

    pm = PlansManager(plans)
    for c in ("2d", "3d_fullres"):
        cm = pm.get_configuration(c)
        assert cm.network_arch_class_name == "nnunet_ext.architectures.dlkunet.DLKUNet"
        stock = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                       cm.network_arch_init_kwargs_req_import, 1, 3, deep_supervision=True)
        ours = nnUNetTrainerDLKUNetS.build_network_architecture(pm, cm, 1, 3, True)
        assert {k: v.shape for k, v in stock.state_dict().items()} == \
               {k: v.shape for k, v in ours.state_dict().items()}

    # stock nnUNetTrainer (short schedule by name) trains the planned architecture from the plans; _nomirror: its
    # final validation without test-time mirroring (4x fewer passes of DLKUNet's slow-on-CPU dilated convolutions)
    run(["nnUNetv2_train", str(ds.dataset_id), "2d", "0", "-p", "nnUNetPlans_dlkunet_s", "-tr",
         "nnUNetTrainer_nomirror_1epoch_2iters", "-device", "cpu"], ds.env)
    out = (ds.results / ds.dataset_folder.name / "nnUNetTrainer_nomirror_1epoch_2iters__nnUNetPlans_dlkunet_s__2d"
           / "fold_0")
    assert (out / "checkpoint_final.pth").is_file()
    assert "DLKUNet" in json.dumps(load_json(str(out.parent / "plans.json"))["configurations"]["2d"])


@pytest.mark.parametrize("args,expected", [
    (["--arch", "no_such_net"], "registered: plain_unet"),
    (["--arch", "dlkunet_l", "--gpu-memory-target", "0.0001"], "too small for dlkunet_l"),
    (["--arch", "monet", "--gpu-memory-target", "-1"], "must be > 0"),
])
def test_plan_bad_input_one_line_and_nothing_written(nnunet_dataset, args, expected):
    ds = nnunet_dataset
    folder = ds.preprocessed / ds.dataset_folder.name
    before = sorted(p.name for p in folder.iterdir())
    proc = run(["nnunet-ext", "plan", "-d", str(ds.dataset_id), *args, "--plans-name", "nnUNetPlans_bad"], ds.env,
               check=False)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and expected in err[0], proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == before



def test_memory_model_constants_are_nnunets(planner_paths):
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    from nnunet_ext.plans.planner import NNUNET_REFERENCE, NNUNET_REFERENCE_GB

    ep = ExperimentPlanner(planner_paths.dataset_id, 8)
    assert NNUNET_REFERENCE == {3: (ep.UNet_reference_val_3d, ep.UNet_reference_val_corresp_bs_3d),
                                2: (ep.UNet_reference_val_2d, ep.UNet_reference_val_corresp_bs_2d)}
    assert NNUNET_REFERENCE_GB == ep.UNet_reference_val_corresp_GB



def test_planned_configuration_fits_the_target_with_parameters(planner_paths):
    """The 7x7 DMSC network has ~14x PlainConvUNet's parameters on pancreas plans: the planner makes room."""
    from nnunet_ext.plans.planner import ArchitecturePlanner

    p = ArchitecturePlanner(planner_paths.dataset_id, 8, arch="dmc_dmscnet_7x7_3d")
    conf = _plan(p, 3)
    b = conf["batch_size"]
    assert p.estimated_memory_gb(conf) <= 8 * b / (b - 0.5) * 1.0001


# ------------------------------------------------------------------------------------------------ several architectures
def _plans_files(ds):
    return sorted(p.name for p in (ds.preprocessed / ds.dataset_folder.name).glob("nnUNetPlans_*.json"))


def test_plan_several_architectures_one_table(nnunet_dataset):
    ds = nnunet_dataset
    proc = run(["nnunet-ext", "plan", "-d", str(ds.dataset_id), "--arch", "plain_unet", "monet",
                "--gpu-memory-target", "4", "-c", "2d", "3d_fullres", "--no-preprocess"], ds.env)
    lines = proc.stdout.splitlines()
    header = next(i for i, l in enumerate(lines) if l.startswith("architecture"))
    assert "GFLOPs/step" in lines[header] and "stock patch" in lines[header]
    rows = [l.split() for l in lines[header + 1:header + 5]]
    assert [(r[0], r[1]) for r in rows] == [("plain_unet", "2d"), ("plain_unet", "3d_fullres"), ("monet", "2d"),
                                            ("monet", "3d_fullres")]
    for r in rows:
        assert float(r[4]) > 0 and float(r[5]) > 0  # estimate, GFLOPs
    # plain_unet at kappa = 1 is stock nnU-Net: the same patch, batch, estimate and FLOPs
    for r in rows[:2]:
        assert r[2:6] == r[6:10]
    for arch in ("plain_unet", "monet"):
        plans = json.loads((ds.preprocessed / ds.dataset_folder.name / f"nnUNetPlans_{arch}.json").read_text())
        assert plans["nnunet_ext"]["architecture"] == arch and plans["nnunet_ext"]["gpu_memory_target_in_gb"] == 4


@pytest.mark.parametrize("args,expected", [
    (["--arch", "plain_unet", "no_such_net"], "--arch no_such_net"),
    (["--arch", "all", "--gpu-memory-target", "0.0001"], "too small for"),
    (["--arch", "plain_unet", "monet", "--plans-name", "x"], "single --arch"),
])
def test_plan_list_bad_input_nothing_written(nnunet_dataset, args, expected):
    ds = nnunet_dataset
    folder = ds.preprocessed / ds.dataset_folder.name
    before = sorted(p.name for p in folder.iterdir())
    proc = run(["nnunet-ext", "plan", "-d", str(ds.dataset_id), *args], ds.env, check=False)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and expected in err[0], proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == before

