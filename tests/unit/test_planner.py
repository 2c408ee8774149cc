"""The memory-aware planner's model: calibration table current, activation bytes, the training-memory terms (the
planner on a dataset and ``nnunet-ext plan``: tests/integration/test_planner.py)."""
import pytest
import torch

from nnunet_ext.benchmark import calibration


def test_calibration_table_covers_the_registry_and_is_current():
    from nnunet_ext.architectures import list_architectures
    from nnunet_ext.plans.planner import load_calibration

    table = load_calibration()
    assert set(table["architectures"]) == set(list_architectures())
    assert calibration.same(table, calibration.measure_all()) == []
    assert table["architectures"]["plain_unet"]["3d"]["kappa"] == 1.0


def test_activation_bytes_of_one_convolution():
    from nnunet_ext.plans.planner import activation_bytes

    # a conv saves its input for the weight gradient; the output is counted once: 2 x 1x4x8x8 fp32
    with torch.device("meta"):
        net = torch.nn.Conv2d(4, 4, 3, padding=1)
    assert activation_bytes(net, (1, 4, 8, 8)) == 2 * 4 * 8 * 8 * 4


# ------------------------------------------------------------------------------------------------ memory model
@pytest.mark.parametrize("dim", [2, 3])
def test_training_memory_terms(dim):
    from nnunet_ext.plans.planner import (NNUNET_REFERENCE, PARAM_STATE_BYTES, reference_arch_kwargs,
                                          training_memory)

    kw, patch = reference_arch_kwargs(dim)
    plain = training_memory("plain_unet", kw, patch, 2)
    # PlainConvUNet on nnU-Net's own plans: exactly nnU-Net's scale, no parameter excess
    ref_val, ref_bs = NNUNET_REFERENCE[dim]
    assert plain["param_excess_gb"] == 0
    assert plain["gpu_gb"] == pytest.approx(plain["fmap"] / ref_val * 2 / ref_bs * 8)
    assert plain["param_state_bytes"] == PARAM_STATE_BYTES * plain["params"]
    # twice the batch: twice the activations, the same parameter state
    double = training_memory("plain_unet", kw, patch, 4)
    assert double["activation_bytes"] == pytest.approx(2 * plain["activation_bytes"])
    assert double["cpu_bytes"] - double["activation_bytes"] == pytest.approx(
        plain["cpu_bytes"] - plain["activation_bytes"])
    # a network with more parameters than PlainConvUNet pays for the difference on the GPU
    heavy = training_memory("dmc_dmscnet_7x7_3d", kw, patch, 2)
    assert heavy["params"] > plain["params"]
    assert heavy["param_excess_gb"] == pytest.approx(PARAM_STATE_BYTES * (heavy["params"] - plain["params"]) / 1e9)
    assert heavy["gpu_gb"] == pytest.approx(heavy["activation_gb"] + heavy["param_excess_gb"])
