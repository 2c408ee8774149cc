"""nnunet_ext/benchmark/memory_check.py (the planner's memory model against a CPU measurement, the command
benchmarks/memory_check.py) and nnunet_ext/benchmark/calibration.py: the machine-independent parts (the real
measurement and the GPU check: tests/integration/test_memory_check.py)."""
import copy

import pytest

from nnunet_ext.benchmark import calibration


@pytest.fixture(scope="module")
def memory_check():
    from nnunet_ext.benchmark import memory_check

    return memory_check


def _row(arch, dim, fmap, params, measured, batch=2):
    return {"arch": arch, "dim": dim, "patch": [8] * dim, "batch": batch, "fmap": fmap, "params": params,
            "measured_bytes": measured}


def test_recalibration_fits_plainconvunet_and_replaces_only_the_misses(memory_check):
    from nnunet_ext.plans.planner import PARAM_STATE_BYTES, load_calibration

    c0 = 50e6  # the CPU overhead the fake measurements carry
    P = PARAM_STATE_BYTES
    table = copy.deepcopy(load_calibration())
    b = table["architectures"]["plain_unet"]["3d"]["bytes_per_element"]
    k_resdsn = table["architectures"]["resdsn"]["3d"]["kappa"]
    k_monet = table["architectures"]["monet"]["3d"]["kappa"]
    results = [_row("plain_unet", 3, f, p, c0 + P * p + b * 2 * f) for f, p in ((1e6, 1e6), (4e6, 2e6))]
    # resdsn: exactly the model with its meta kappa; monet: twice its meta kappa (a miss)
    results += [_row("resdsn", 3, f, 1e6, c0 + P * 1e6 + k_resdsn * b * 2 * f) for f in (1e6, 3e6)]
    results += [_row("monet", 3, f, 1e6, c0 + P * 1e6 + 2 * k_monet * b * 2 * f) for f in (1e6, 3e6)]
    assert memory_check.fit_reference(results, 3, b) == (pytest.approx(c0), b)
    changes = memory_check.recalibrate(results, table)
    arch = table["architectures"]
    assert table["cpu_check"]["overhead_bytes"]["3d"] == pytest.approx(c0, abs=1)
    assert arch["resdsn"]["3d"]["kappa"] == k_resdsn and "method" not in arch["resdsn"]["3d"]
    assert arch["monet"]["3d"]["kappa"] == pytest.approx(2 * k_monet, rel=1e-3)
    assert arch["monet"]["3d"]["meta_kappa"] == k_monet and arch["monet"]["3d"]["method"] == memory_check.METHOD
    assert len([c for c in changes if "monet" in c]) == 1
    # the recalibrated model reproduces the measurements it was fit to
    from nnunet_ext.plans.planner import memory_factor, reference_bytes_per_element

    assert memory_factor("monet", 3, table) == (pytest.approx(2 * k_monet, rel=1e-3),
                                               f"{memory_check.METHOD} (calibration table)")
    assert reference_bytes_per_element(3, table) == b


def test_calibrate_planner_check_ignores_a_cpu_recalibration():
    two_d = {"kappa": 1.4}
    a = {"architectures": {"monet": {"2d": two_d, "3d": {"kappa": 1.5}}}}
    b = {"architectures": {"monet": {"2d": two_d,
                                     "3d": {"kappa": 2.0, "meta_kappa": 1.5, "method": "cpu-rss-train-step"}}}}
    assert calibration.same(a, b) == [] and calibration.same(a, {"architectures": {}}) != []


def test_same_network_groups(memory_check):
    groups = memory_check.same_network_groups(["plain_unet", "two_stage_unet", "monet", "dmc_unet_2d",
                                               "dmc_unet_3d"])
    assert groups == [["plain_unet", "two_stage_unet"], ["monet"], ["dmc_unet_2d", "dmc_unet_3d"]]
