"""One test over the whole registry: every registered variant, at tiny sizes, adapted to nnU-Net-like plans in 2D and
3D (anisotropic strides, odd sizes a planner produces), with deep supervision on and off. A new architecture joins
by registering; there is no per-architecture code here."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from torch import nn
from torch.nn.modules.conv import _ConvNd

from tests.helpers import n_trainable
from nnunet_ext import architectures as A

NUM_CLASSES = 3  # differs from every feature width below, so segmentation heads can be told apart
IN_CH = 2


def _arch_kwargs(dim, strides, features):
    n = len(strides)
    conv = f"torch.nn.Conv{dim}d"
    return dict(n_stages=n, features_per_stage=features, conv_op=conv, kernel_sizes=[[3] * dim] * n,
                strides=strides, n_conv_per_stage=[2] * n, n_conv_per_stage_decoder=[2] * (n - 1), conv_bias=True,
                norm_op=f"torch.nn.InstanceNorm{dim}d", norm_op_kwargs={"eps": 1e-5, "affine": True},
                dropout_op=None, dropout_op_kwargs=None, nonlin="torch.nn.LeakyReLU",
                nonlin_kwargs={"inplace": True})


# (label, patch, strides, features): geometries nnU-Net's planner produces, scaled down
GEOMETRIES = [
    ("2d", (48, 40), [[1, 1], [2, 2], [2, 2], [2, 2]], [8, 16, 32, 32]),
    # z pooled only from the third stage; odd sizes (3, 4, 3) at the bottom. 12 x 32 x 24 rather than 20 x 48 x 40:
    # the same stages, strides and odd bottom, a quarter of the voxels (the 3D variants' forward/backward on the CPU
    # dominated the default run: 58 s -> 13 s for dlkunet_l, 57 s -> 15 s for monet, loaded 2-core machine)
    ("3d_aniso", (12, 32, 24), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], [8, 16, 32, 32]),
    ("3d_odd_unpooled", (7, 32, 24), [[1, 1, 1], [1, 2, 2], [1, 2, 2]], [8, 16, 24]),
]


def _ds_shapes(patch, strides):
    # nnU-Net's own function, on a stand-in trainer
    stand_in = SimpleNamespace(enable_deep_supervision=True,
                               configuration_manager=SimpleNamespace(pool_op_kernel_sizes=strides))
    scales = nnUNetTrainer._get_deep_supervision_scales(stand_in)
    return [tuple(int(round(p * s)) for p, s in zip(patch, sc)) for sc in scales]


CASES = [pytest.param(name, geo, id=f"{name}-{geo[0]}") for name in A.list_architectures() for geo in GEOMETRIES]


def _build(name, geo, ds):
    _, patch, strides, features = geo
    spec = A.get_spec(name)
    arch_kwargs = _arch_kwargs(len(patch), strides, features)
    torch.manual_seed(0)
    return A.create_from_plans(name, arch_kwargs, IN_CH, NUM_CLASSES, ds, **spec.test_kwargs), arch_kwargs


@pytest.mark.parametrize("name,geo", CASES)
def test_architecture_contract(name, geo):
    _, patch, strides, _ = geo
    torch.manual_seed(0)
    x = torch.randn(2, IN_CH, *patch)
    expected = _ds_shapes(patch, strides)

    net_ds, arch_kwargs = _build(name, geo, True)
    net_ds.train()

    # --- deep supervision on: one output per scale of nnU-Net, highest resolution first, all heads trained
    out = net_ds(x)
    assert isinstance(out, (list, tuple)), "deep supervision on must return a list of outputs"
    assert [tuple(o.shape[2:]) for o in out] == expected
    assert all(o.shape[:2] == (2, NUM_CLASSES) for o in out)
    assert all(torch.isfinite(o).all() for o in out)
    sum(o.float().mean() for o in out).backward()
    no_grad = [n for n, p in net_ds.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in net_ds.parameters() if p.grad is not None)

    # --- deep supervision off: one full-resolution output; same state_dict (loads strictly both ways)
    net = _build(name, geo, False)[0]
    net.load_state_dict(net_ds.state_dict(), strict=True)
    net_ds.load_state_dict(net.state_dict(), strict=True)
    net.train()
    y = net(x)
    assert isinstance(y, torch.Tensor)
    assert tuple(y.shape) == (2, NUM_CLASSES, *patch)
    y.mean().backward()
    heads = {id(m.weight) for m in net.modules() if isinstance(m, _ConvNd) and m.out_channels == NUM_CLASSES}
    heads |= {id(m.bias) for m in net.modules()
              if isinstance(m, _ConvNd) and m.out_channels == NUM_CLASSES and m.bias is not None}
    unused = [n for n, p in net.named_parameters() if p.grad is None and id(p) not in heads]
    assert not unused, f"without deep supervision only deep-supervision heads may go unused: {unused[:5]}"

    # --- the switch nnU-Net flips (set_deep_supervision_enabled) is .decoder.deep_supervision
    net_ds.decoder.deep_supervision = False
    with torch.no_grad():
        assert tuple(net_ds(x).shape) == (2, NUM_CLASSES, *patch)
    net_ds.decoder.deep_supervision = True

    # --- compute_conv_feature_map_size == numel of every conv output, measured by hooks (batch 1)
    for model in (net, net_ds):
        measured = []
        hooks = [m.register_forward_hook(lambda mod, i, o: measured.append(o[0].numel()))
                 for m in model.modules() if isinstance(m, _ConvNd)]
        with torch.no_grad():
            model.eval()
            model(x[:1])
        for h in hooks:
            h.remove()
        assert int(model.compute_conv_feature_map_size(patch)) == sum(measured)

    # --- named in a plans file and built by nnU-Net's own get_network_from_plans
    entry = A.to_plans_entry(name, arch_kwargs, **A.get_spec(name).test_kwargs)
    entry = json.loads(json.dumps(entry))  # plans files are JSON
    from_plans = get_network_from_plans(entry["network_class_name"], entry["arch_kwargs"],
                                        entry["_kw_requires_import"], IN_CH, NUM_CLASSES, deep_supervision=True)
    assert {k: v.shape for k, v in from_plans.state_dict().items()} == \
           {k: v.shape for k, v in net_ds.state_dict().items()}


@pytest.mark.parametrize("name", A.list_architectures())
def test_default_construction(name, meta_model):
    """The default (paper) construction builds (with ``initialize``), has trainable parameters and a description.
    Built on the meta device (the DMC-Net rows alone are 1.3 G parameters); CPU construction is the contract
    test's, and test_meta_count_equals_cpu_count ties the two."""
    spec = A.get_spec(name)
    net = meta_model(name)
    assert n_trainable(net) > 0
    assert spec.description and "\n" not in spec.description


#: variants small enough to build on the CPU in a default run (under 10 M parameters)
SMALL = ["plain_unet", "dlkunet_s", "dlkunet_m", "monet", "resdsn", "sresdsn", "two_stage_unet"]


@pytest.mark.parametrize("name", SMALL)
def test_meta_count_equals_cpu_count(name):
    """Counting on the meta device gives the count of the real (CPU) network, per parameter tensor."""
    cpu = A.create(name)
    meta = A.meta_model(name)
    assert next(meta.parameters()).is_meta and not next(cpu.parameters()).is_meta
    assert [(k, p.shape, p.requires_grad) for k, p in meta.named_parameters()] == \
           [(k, p.shape, p.requires_grad) for k, p in cpu.named_parameters()]
    assert A.count_parameters_of(name) == n_trainable(cpu) > 0
    assert A.meta_model(name) is meta  # built once per process


def test_meta_models_are_keyed_by_overrides():
    base, literal = A.meta_model("dlkunet_s"), A.meta_model("dlkunet_s", separate_channel_conv=True)
    assert literal is not base and A.count_parameters_of("dlkunet_s", separate_channel_conv=True) > n_trainable(base)


def test_unknown_architecture_lists_registered():
    with pytest.raises(A.UnknownArchitectureError) as e:
        A.create("no_such_net")
    msg = str(e.value)
    assert "no_such_net" in msg and all(n in msg for n in A.list_architectures())
    assert isinstance(e.value, ValueError)


def test_register_rejects_duplicates_and_non_modules():
    with pytest.raises(ValueError):
        A.register("plain_unet", nn.Conv2d, description="dup")
    with pytest.raises(TypeError):
        A.register("not_a_module_xyz", int, description="x")


def test_plain_unet_equals_stock_network():
    """Our baseline trainer builds exactly what stock nnU-Net builds from the same plans."""
    geo = GEOMETRIES[1]
    net, arch_kwargs = _build("plain_unet", geo, True)
    stock = get_network_from_plans("dynamic_network_architectures.architectures.unet.PlainConvUNet", arch_kwargs,
                                   ["conv_op", "norm_op", "dropout_op", "nonlin"], IN_CH, NUM_CLASSES,
                                   deep_supervision=True)
    assert type(stock) is type(net)
    assert {k: v.shape for k, v in stock.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    assert np.isclose(stock.compute_conv_feature_map_size(geo[1]), net.compute_conv_feature_map_size(geo[1]))
