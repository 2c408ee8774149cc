"""DMC-Net family (architectures/dmc_net.py, trainers/dmc_net.py): Table 4's parameter counts, the modules'
equations and the DMRC pooling rule, bad input, the trainers (found by nnU-Net's lookup, built per dimension); the
end-to-end run of the stock nnUNetv2_train / nnUNetv2_predict in 2d and 3d_fullres is tests/integration/test_dmc_net.py.
The registry-wide contract (shapes, deep supervision, gradients, feature-map size, plans round trip) is
tests/unit/test_registry.py's."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers import n_trainable
from nnunet_ext import architectures as A
from nnunet_ext.architectures.dmc_net import DMRC, DMSC, TABLE4, DMCNet
from nnunet_ext.benchmark.bad_inputs import DS, make_world, tree
from nnunet_ext.benchmark.dmc_flops import count_flops

# Table 4 (TCIA-Pancreas): the paper's trainable parameters (M); 2x2 AvgPool rows have the 4x4 rows' count
TABLE4_ROWS = ["dmc_unet_2d", "dmc_dmrcnet_2d", "dmc_dmscnet_5x5_2d", "dmc_dmscnet_5x5dw_2d", "dmc_dmscnet_7x7_2d",
               "dmc_dmscnet_7x7dw_2d", "dmc_unet_3d", "dmc_dmrcnet_3d", "dmc_dmscnet_5x5_3d", "dmc_dmscnet_5x5dw_3d",
               "dmc_dmscnet_7x7_3d", "dmc_dmscnet_7x7dw_3d"]


def _meta_params(name, **overrides):
    """Trainable parameters of the default construction, built on the meta device once per test run."""
    return n_trainable(A.meta_model(name, **overrides))


@pytest.mark.parametrize("name", TABLE4_ROWS + ["dmc_dmrcnet_pool2_2d", "dmc_dmrcnet_pool2_3d"])
def test_table4_parameters(name):
    ours = _meta_params(name) / 1e6
    assert abs(ours - TABLE4[name]) / TABLE4[name] < 0.01, f"{name}: {ours:.3f}M vs paper {TABLE4[name]}M"


def test_table4_rows_are_distinct_networks():
    # the counts above would pass for a wrong network only by accident: the switches must change the count
    counts = {n: _meta_params(n) for n in TABLE4_ROWS}
    assert len(set(counts.values())) == len(counts)
    assert _meta_params("dmcnet_2d") > _meta_params("dmc_dmscnet_5x5_2d")
    # the 1x1 input projection of DMC-Net (Fig. 1) is what the ablation rows do not have
    assert _meta_params("dmc_unet_2d", input_projection=True) - _meta_params("dmc_unet_2d") == (1 * 32 + 32) + 3 * 3 * (32 - 1) * 32


def test_paper_configuration_is_batchnorm_and_2_classes(meta_model):
    net = meta_model("dmc_dmrcnet_2d")
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in net.modules())
    assert net.decoder.seg_layers[-1].out_channels == 2 and net.encoder.stages[0][1].units[0].conv_f1.conv.in_channels == 1


# ----------------------------------------------------------------------------------------------- module equations
def _ops(conv_op, dim):
    return dict(norm_op=getattr(nn, f"InstanceNorm{dim}d"), norm_op_kwargs={"affine": True},
                nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": False})


def test_dmrc_follows_the_equations():
    torch.manual_seed(0)
    m = DMRC(nn.Conv2d, 3, 5, pool_size=4, **_ops(nn.Conv2d, 2)).eval()
    x = torch.randn(2, 3, 16, 12)
    f1 = m.conv_f1(x)
    f2 = F.interpolate(m.conv_f2(F.avg_pool2d(x, 4, 4)), size=(16, 12), mode="nearest")
    f = f1 * torch.sigmoid(f2 + m.conv_f3(x))
    fp = m.conv_f_prime(f)
    g = torch.sigmoid(m.conv_g(fp.mean(dim=(2, 3), keepdim=True)))
    torch.testing.assert_close(m(x), fp * g)


def test_dmsc_follows_the_equations_and_lightweight_design():
    torch.manual_seed(0)
    m = DMSC(nn.Conv3d, 3, 4, kernel_size=5, depthwise=True, **_ops(nn.Conv3d, 3)).eval()
    x = torch.randn(1, 3, 6, 7, 5)
    fcat = torch.cat([m.path_3(x), m.path_k(x)], 1)
    g = torch.sigmoid(m.conv_g(fcat.mean(dim=(2, 3, 4), keepdim=True)))
    torch.testing.assert_close(m(x), m.conv_out(fcat * g))
    dw = [c for c in m.path_k.modules() if isinstance(c, nn.Conv3d) and c.kernel_size == (5, 5, 5)]
    assert len(dw) == 2 and all(c.groups == 4 for c in dw)
    std = DMSC(nn.Conv3d, 3, 4, kernel_size=7, depthwise=False)
    assert [c.kernel_size for c in std.path_k.modules() if isinstance(c, nn.Conv3d)] == [(7, 7, 7)] * 2
    with pytest.raises(ValueError, match="odd"):
        DMSC(nn.Conv2d, 3, 4, kernel_size=4)


@pytest.mark.parametrize("conv_op,size,expected_pool", [
    (nn.Conv2d, (16, 12), (4, 4)), (nn.Conv2d, (3, 9), (3, 4)), (nn.Conv2d, (1, 2), (1, 2)),
    (nn.Conv3d, (7, 10, 3), (1, 4, 3)), (nn.Conv3d, (2, 1, 5), (1, 1, 4))])
def test_dmrc_pooling_rule_and_exact_upsampling(conv_op, size, expected_pool):
    """Pool min(P_a, n_a) per axis (1 x P x P in 3D), never more than the map, ceil mode (ceil(n / p) cells); F2
    returns to the exact size."""
    m = DMRC(conv_op, 2, 3, pool_size=4)
    assert m.effective_pool(size) == expected_pool
    seen = {}
    m.conv_f2.register_forward_hook(lambda mod, i, o: seen.update(pooled=tuple(i[0].shape[2:])))
    y = m(torch.randn(1, 2, *size))
    assert tuple(y.shape[2:]) == size
    assert seen["pooled"] == tuple(-(-n // p) for n, p in zip(size, expected_pool)) == m.pooled_size(size)
    assert all(p >= 1 for p in seen["pooled"])
    assert DMRC.pool_tuple(2, 3) == (1, 2, 2) and DMRC.pool_tuple(4, 2) == (4, 4)


def test_dmrc_pooling_uses_every_voxel():
    """A 7x7 map with a 4x4 pool: every voxel reaches F2 (ceil mode), each voxel's F2 is that of its own cell, and
    the last cell is the mean of the 3 remaining rows/columns only (no zero padding in the mean)."""
    torch.manual_seed(0)
    m = DMRC(nn.Conv2d, 1, 1, pool_size=4).eval()
    seen = {}
    m.conv_f2.register_forward_hook(lambda mod, i, o: seen.update(inp=i[0].detach(), out=o.detach()))
    x = torch.randn(1, 1, 7, 7)
    with torch.no_grad():
        m(x)
        pooled = seen["inp"]
        assert pooled.shape[2:] == (2, 2)
        torch.testing.assert_close(pooled[0, 0, 1, 1], x[0, 0, 4:, 4:].mean())
        torch.testing.assert_close(pooled[0, 0, 0, 1], x[0, 0, :4, 4:].mean())
        for r, c in [(6, 6), (0, 6), (6, 0)]:  # the voxels floor mode would drop change F2
            y = x.clone()
            y[0, 0, r, c] += 10.0
            m(y)
            assert not torch.equal(seen["inp"], pooled)
        # upsampling: voxel (i, j) gets the F2 of cell (i // 4, j // 4)
        f2_cells = seen["out"]
        up = {}
        h = m.conv_f3.register_forward_hook(lambda mod, i, o: up.update(f3=o.detach()))
        fs = {}
        h2 = m.conv_f1.register_forward_hook(lambda mod, i, o: fs.update(f1=o.detach()))
        m(y)
        h.remove(), h2.remove()
    idx = torch.arange(7) // 4
    expected_f2 = f2_cells[0, 0][idx][:, idx]
    # F = F1 * sigmoid(F2 + F3) -> recover F2 from the block's own intermediate maps
    f_hook = {}
    m.conv_f_prime.register_forward_hook(lambda mod, i, o: f_hook.update(f=i[0].detach()))
    with torch.no_grad():
        m(y)
    f2 = torch.logit(f_hook["f"] / fs["f1"]) - up["f3"]
    torch.testing.assert_close(f2[0, 0], expected_f2, atol=1e-3, rtol=1e-3)


def test_plans_kernel_sizes_option():
    """use_plans_kernel_sizes: every "3x3" conv takes the stage's plans kernel (1x3x3), DMSC's k only in plane;
    off (default): the paper's 3x3x3 everywhere and Table 4's count."""
    kw = _plans(3, [[1, 1, 1], [1, 2, 2], [2, 2, 2]], [4, 8, 8])
    kw["kernel_sizes"] = [[1, 3, 3], [1, 3, 3], [3, 3, 3]]
    paper = A.create_from_plans("dmcnet_3d", kw, 1, 2, False)
    net = A.create_from_plans("dmcnet_3d", kw, 1, 2, True, use_plans_kernel_sizes=True)
    kernels = lambda mod: {c.kernel_size for c in mod.modules() if isinstance(c, nn.Conv3d) and c.kernel_size != (1, 1, 1)}
    assert kernels(paper) == {(3, 3, 3), (5, 5, 5)}
    stage0, stage2 = net.encoder.stages[0][1], net.encoder.stages[2][1]
    assert kernels(stage0) == {(1, 3, 3), (1, 5, 5)} and kernels(stage2) == {(3, 3, 3), (5, 5, 5)}
    assert stage0.units[1].conv_f2.kernel_size == (1, 3, 3) and stage0.units[1].conv_f2.padding == (0, 1, 1)
    assert net.decoder.transpconvs[-1].kernel_size == (1, 3, 3)  # returns to stage 0
    assert net.decoder.transpconvs[0].kernel_size == (1, 3, 3)   # returns to stage 1
    out = net(torch.randn(1, 1, 4, 16, 16))
    assert [tuple(o.shape[2:]) for o in out] == [(4, 16, 16), (4, 8, 8)]
    count = lambda mod: sum(p.numel() for p in mod.parameters())
    assert count(net) < count(paper)
    assert _meta_params("dmc_unet_3d", use_plans_kernel_sizes=False) == _meta_params("dmc_unet_3d")
    with pytest.raises(ValueError, match="needs the plans' kernel_sizes"):
        A.create("dmc_unet_2d", use_plans_kernel_sizes=True)
    kw["kernel_sizes"] = [[1, 3, 3], [1, 2, 2], [3, 3, 3]]
    with pytest.raises(ValueError, match=r"stage 1, axis 1: kernel size 2 must be odd"):
        A.create_from_plans("dmc_unet_3d", kw, 1, 2, False, use_plans_kernel_sizes=True)


# ----------------------------------------------------------------------------------------------- bad input
def _plans(dim, strides, features):
    n = len(strides)
    return dict(n_stages=n, features_per_stage=features, conv_op=f"torch.nn.Conv{dim}d", kernel_sizes=[[3] * dim] * n,
                strides=strides, n_conv_per_stage=[2] * n, n_conv_per_stage_decoder=[2] * (n - 1), conv_bias=True,
                norm_op=f"torch.nn.InstanceNorm{dim}d", norm_op_kwargs={"eps": 1e-5, "affine": True},
                dropout_op=None, dropout_op_kwargs=None, nonlin="torch.nn.LeakyReLU", nonlin_kwargs={"inplace": True})


def test_bad_input_size_names_stage_axis_and_size():
    net = A.create_from_plans("dmcnet_3d", _plans(3, [[1, 1, 1], [1, 2, 2], [2, 2, 2]], [4, 8, 8]), 1, 2, False)
    with pytest.raises(ValueError, match=r"stage 2, axis 0: size 5"):
        net(torch.randn(1, 1, 5, 16, 16))
    with pytest.raises(ValueError, match=r"stage 1, axis 2: size 7"):
        net.compute_conv_feature_map_size((8, 16, 7))
    with pytest.raises(ValueError, match="spatial axes"):
        net.check_input_size((8, 16))


def test_bad_plans_name_stage_and_axis():
    with pytest.raises(ValueError, match=r"stage 1: stride \[2, 2\] has 2 axes"):
        A.create_from_plans("dmc_dmrcnet_3d", _plans(3, [[1, 1, 1], [2, 2], [2, 2, 2]], [4, 8, 8]), 1, 2, False)
    with pytest.raises(ValueError, match=r"stage 2, axis 1: stride 0"):
        A.create_from_plans("dmc_unet_2d", _plans(2, [[1, 1], [2, 2], [2, 0]], [4, 8, 8]), 1, 2, False)
    with pytest.raises(ValueError, match="unknown architecture 'dmcnet_4d'.*dmcnet_2d"):
        A.create("dmcnet_4d")


def test_too_few_stages_is_a_clear_value_error():
    with pytest.raises(ValueError, match=r"DMC-Net needs n_stages >= 2 .* got 1"):
        A.create_from_plans("dmc_unet_3d", _plans(3, [[1, 1, 1]], [4]), 1, 2, False)


def test_plans_norm_by_default_and_batchnorm_switch():
    plans = _plans(2, [[1, 1], [2, 2]], [4, 8])
    assert any(isinstance(m, nn.InstanceNorm2d) for m in A.create_from_plans("dmcnet_2d", plans, 1, 2, True).modules())
    bn = A.create_from_plans("dmcnet_2d", plans, 1, 2, True, batch_norm=True)
    assert any(isinstance(m, nn.BatchNorm2d) for m in bn.modules())
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in bn.modules())


# ----------------------------------------------------------------------------------------------- FLOPs
def test_flop_count_on_meta_device_scales_with_pixels():
    small, big = count_flops("dmc_unet_2d", (64, 64)), count_flops("dmc_unet_2d", (128, 128))
    assert small > 0 and big == 4 * small   # every conv of the U-Net is proportional to the pixel count
    assert count_flops("dmc_dmrcnet_2d", (64, 64)) < count_flops("dmc_dmrcnet_pool2_2d", (64, 64))  # Table 4's order


# ----------------------------------------------------------------------------------------------- trainers
DMC_TRAINERS = ["nnUNetTrainerDMCNet", "nnUNetTrainerDMSCNet", "nnUNetTrainerDMRCNet", "nnUNetTrainerDMCNetPaper"]
#: trainer -> (3d variant, 2d variant): the rest of Table 4, paired 2D/3D as in the paper
ABLATION_TRAINERS = {
    "nnUNetTrainerDMCUNet": ("dmc_unet_3d", "dmc_unet_2d"),
    "nnUNetTrainerDMSCNet5x5": ("dmc_dmscnet_5x5_3d", "dmc_dmscnet_5x5_2d"),
    "nnUNetTrainerDMSCNet5x5DW": ("dmc_dmscnet_5x5dw_3d", "dmc_dmscnet_5x5dw_2d"),
    "nnUNetTrainerDMSCNet7x7": ("dmc_dmscnet_7x7_3d", "dmc_dmscnet_7x7_2d"),
    "nnUNetTrainerDMSCNet7x7DW": ("dmc_dmscnet_7x7dw_3d", "dmc_dmscnet_7x7dw_2d"),
    "nnUNetTrainerDMRCNetPool2": ("dmc_dmrcnet_pool2_3d", "dmc_dmrcnet_pool2_2d"),
}
#: the former ``...PlansKernels`` trainers: names kept as the ``_planskernels`` suffix on their base
PLANS_KERNEL_TRAINERS = ["nnUNetTrainerDMCNetPlansKernels", "nnUNetTrainerDMSCNetPlansKernels",
                         "nnUNetTrainerDMRCNetPlansKernels", "nnUNetTrainerDMCUNetPlansKernels"]
PLANS_KERNEL_SUFFIXED = [n.replace("PlansKernels", "_planskernels") for n in PLANS_KERNEL_TRAINERS]


def test_trainers_found_by_nnunet_lookup(monkeypatch):
    import nnunet_ext
    from nnunet_ext import trainers as T
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    monkeypatch.setenv("nnUNet_extTrainer", nnunet_ext.EXT_TRAINER_DIR)
    names = DMC_TRAINERS + list(ABLATION_TRAINERS) + PLANS_KERNEL_TRAINERS + ["nnUNetTrainerDMCNet_1epoch_4iters",
                                                                              "nnUNetTrainerDMCUNet_1epoch_4iters"]
    names += PLANS_KERNEL_SUFFIXED + ["nnUNetTrainerDMSCNet7x7_planskernels_1epoch",
                                      "nnUNetTrainerDMCNetPlansKernels_1epoch_4iters"]
    assert [recursive_find_trainer_class_by_name(n) for n in names] == [getattr(T, n) for n in names]
    assert T.nnUNetTrainerDMCNetPaper.merged_hparams()["initial_lr"] == 1e-3


def test_trainers_build_per_dimension_from_plans():
    from nnunet_ext import trainers as T

    def cm(dim, strides, features):
        return SimpleNamespace(patch_size=[32] * dim, network_arch_init_kwargs=_plans(dim, strides, features))

    net2 = T.nnUNetTrainerDMCNet.build_network_architecture(None, cm(2, [[1, 1], [2, 2]], [4, 8]), 1, 3, True)
    net3 = T.nnUNetTrainerDMCNet.build_network_architecture(None, cm(3, [[1, 1, 1], [1, 2, 2], [2, 2, 2]], [4, 8, 8]),
                                                          1, 3, True)
    assert isinstance(net2, DMCNet) and isinstance(net3, DMCNet)
    assert not net2.encoder.stages[0][1].units[0].depthwise       # 2D: 5x5 conv
    assert net3.encoder.stages[0][1].units[0].depthwise           # 3D: 5x5x5 DWConv
    assert net3.encoder.stages[1][1].units[1].pool_size == (1, 4, 4)
    assert [o.shape[2:] for o in net3(torch.randn(1, 1, 4, 16, 16))] == [(4, 16, 16), (4, 8, 8)]
    paper = T.nnUNetTrainerDMCNetPaper.build_network_architecture(None, cm(2, [[1, 1], [2, 2]], [4, 8]), 1, 3, True)
    assert any(isinstance(m, nn.BatchNorm2d) for m in paper.modules())
    dmrc = T.nnUNetTrainerDMRCNet.build_network_architecture(None, cm(2, [[1, 1], [2, 2]], [4, 8]), 1, 3, True)
    assert isinstance(dmrc.encoder.stages[0][1].units[0], DMRC)


def _cm(dim, strides, features, kernels=None):
    kw = _plans(dim, strides, features)
    if kernels is not None:
        kw["kernel_sizes"] = kernels
    return SimpleNamespace(patch_size=[16] * dim, network_arch_init_kwargs=kw)


@pytest.mark.parametrize("trainer", list(ABLATION_TRAINERS))
def test_ablation_trainers_build_the_table4_network_per_dimension(trainer):
    """Each ablation trainer builds, on small 2d and 3d plans, the very network of its Table 4 row (same module
    structure and parameter shapes as the registry variant on those plans), and it runs."""
    from nnunet_ext import trainers as T

    cls = getattr(T, trainer)
    for dim, variant, strides, x in ((3, ABLATION_TRAINERS[trainer][0], [[1, 1, 1], [1, 2, 2]], (1, 1, 4, 8, 8)),
                                     (2, ABLATION_TRAINERS[trainer][1], [[1, 1], [2, 2]], (1, 1, 8, 8))):
        cm = _cm(dim, strides, [4, 8])
        net = cls.build_network_architecture(None, cm, 1, 3, True)
        ref = A.create_from_plans(variant, cm.network_arch_init_kwargs, 1, 3, True)
        assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
        assert str(net) == str(ref)
        assert [tuple(o.shape[2:]) for o in net(torch.randn(*x))][0] == x[2:]


@pytest.mark.parametrize("trainer", PLANS_KERNEL_TRAINERS + PLANS_KERNEL_SUFFIXED)
def test_plans_kernel_trainers_take_the_plans_kernels(trainer):
    from nnunet_ext import trainers as T

    cm = _cm(3, [[1, 1, 1], [1, 2, 2], [2, 2, 2]], [4, 8, 8], kernels=[[1, 3, 3], [1, 3, 3], [3, 3, 3]])
    net = getattr(T, trainer).build_network_architecture(None, cm, 1, 3, True)
    first = {c.kernel_size for c in net.encoder.stages[0].modules() if isinstance(c, nn.Conv3d)}
    assert (1, 3, 3) in first and (3, 3, 3) not in first
    assert (3, 3, 3) in {c.kernel_size for c in net.encoder.stages[2].modules() if isinstance(c, nn.Conv3d)}
    assert [tuple(o.shape[2:]) for o in net(torch.randn(1, 1, 4, 16, 16))][0] == (4, 16, 16)
    net2 = getattr(T, trainer).build_network_architecture(None, _cm(2, [[1, 1], [2, 2]], [4, 8]), 1, 3, False)
    assert net2(torch.randn(1, 1, 8, 8)).shape == (1, 3, 8, 8)


# ----------------------------------------------------------------------------------------------- the _planskernels suffix
def _dmc_family():
    from nnunet_ext import trainers as T
    from nnunet_ext.trainers import dmc_net

    return {n: c for n, c in T.exported_trainers().items() if c.__module__ == dmc_net.__name__}


def test_planskernels_suffix_on_every_dmc_trainer():
    """Every trainer of the DMC-Net family takes ``_planskernels``: its own network and constructor kwargs (e.g. the
    paper trainer's BatchNorm) plus the plans' kernels, the same state_dict as the explicit construction."""
    from nnunet_ext import trainers as T

    family = _dmc_family()
    assert set(DMC_TRAINERS) | set(ABLATION_TRAINERS) <= set(family)
    for name, base in family.items():
        cls = T.get_trainer(f"{name}_planskernels")
        assert issubclass(cls, base) and cls.arch_kwargs == {**base.arch_kwargs, "use_plans_kernel_sizes": True}
        for dim, strides, kernels in ((3, [[1, 1, 1], [1, 2, 2]], [[1, 3, 3], [3, 3, 3]]), (2, [[1, 1], [2, 2]], None)):
            cm = _cm(dim, strides, [4, 8], kernels=kernels or [[3, 1], [3, 3]])
            torch.manual_seed(0)
            net = cls.build_network_architecture(None, cm, 1, 3, True)
            torch.manual_seed(0)
            ref = A.create_from_plans(base.arch_for(cm), cm.network_arch_init_kwargs, 1, 3, True,
                                      **base.arch_kwargs, use_plans_kernel_sizes=True)
            assert str(net) == str(ref), name
            for (k, v), (k2, v2) in zip(net.state_dict().items(), ref.state_dict().items()):
                assert k == k2 and torch.equal(v, v2), (name, k)
            first = {c.kernel_size for c in net.encoder.stages[0].modules() if isinstance(c, (nn.Conv2d, nn.Conv3d))}
            assert ((1, 3, 3) if dim == 3 else (3, 1)) in first, (name, first)


@pytest.mark.parametrize("old", PLANS_KERNEL_TRAINERS)
def test_former_plans_kernel_trainers_are_the_suffixed_ones_and_load_their_checkpoints(old, monkeypatch):
    """A former name is the suffixed trainer under the old name (nnU-Net's lookup finds it from a checkpoint's
    ``trainer_name``), and the network of a checkpoint trained under it (its base's network with
    ``use_plans_kernel_sizes=True``) loads strictly."""
    import nnunet_ext
    from nnunet_ext import trainers as T
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    monkeypatch.setenv("nnUNet_extTrainer", nnunet_ext.EXT_TRAINER_DIR)
    cls = recursive_find_trainer_class_by_name(old)
    suffixed = T.get_trainer(old.replace("PlansKernels", "_planskernels"))
    assert cls.__name__ == old and issubclass(cls, suffixed) and cls.arch_kwargs == suffixed.arch_kwargs
    base = getattr(T, old.replace("PlansKernels", ""))
    cm = _cm(3, [[1, 1, 1], [1, 2, 2], [2, 2, 2]], [4, 8, 8], kernels=[[1, 3, 3], [1, 3, 3], [3, 3, 3]])
    former = A.create_from_plans(base.arch_for(cm), cm.network_arch_init_kwargs, 1, 3, True, use_plans_kernel_sizes=True)
    cls.build_network_architecture(None, cm, 1, 3, True).load_state_dict(former.state_dict(), strict=True)


@pytest.fixture
def world(tmp_path, monkeypatch):
    return make_world(tmp_path, monkeypatch.setenv)


@pytest.mark.parametrize("name", ["nnUNetTrainerMoNet_planskernels", "nnUNetTrainer_planskernels",
                                  "nnUNetTrainerPlainUNet_planskernels_1epoch"])
def test_planskernels_outside_the_dmc_family_is_refused(name, world, capsys):
    """No such trainer: ``nnunet-ext train`` gives one line, exit 2, nothing written; stock nnU-Net's lookup
    (what nnUNetv2_train does first) raises its own 'Could not find requested nnunet trainer'."""
    import traceback

    from nnunet_ext import trainers as T
    from nnunet_ext.cli import main
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    with pytest.raises(AttributeError, match="suffix 'planskernels' does not apply to nnUNetTrainer"):
        T.get_trainer(name)
    before = tree(world.tmp)
    capsys.readouterr()
    rc = main(["train", DS, "3d_fullres", "0", "-tr", name, "-device", "cpu"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1 and f"{name!r} not found" in err[0], err
    assert tree(world.tmp) == before
    with pytest.raises(RuntimeError, match=f"Could not find requested nnunet trainer {name}") as e:
        recursive_find_trainer_class_by_name(name)
    frames = [f.filename for f in traceback.extract_tb(e.value.__traceback__)]
    assert not [f for f in frames if "nnunet_ext" in f or "/trainers/" in f], frames


# ----------------------------------------------------------------------------------------------- up(): nearest
def test_dmrc_nearest_upsampling_agrees_with_repeat_where_the_pool_divides():
    """The paper's up() (nearest interpolation, ``upsample="nearest"``) and the default repeat-and-crop give the
    same output where the pool divides the map (also 7 with pool 4: cells 0-3, 4-6 either way) and differ where it
    does not (14 with pool 4: nearest maps row 7 to cell 2, repeat to cell 1)."""
    torch.manual_seed(0)
    rep = DMRC(nn.Conv3d, 2, 3, pool_size=4).eval()
    near = DMRC(nn.Conv3d, 2, 3, pool_size=4, upsample="nearest").eval()
    near.load_state_dict(rep.state_dict())
    with torch.no_grad():
        for size in ((4, 16, 16), (3, 8, 12), (2, 7, 7)):
            x = torch.randn(1, 2, *size)
            assert torch.equal(rep(x), near(x)), size
        x = torch.randn(1, 2, 3, 14, 14)
        assert not torch.allclose(rep(x), near(x))
    with pytest.raises(ValueError, match="upsample 'bilinear'"):
        DMRC(nn.Conv2d, 2, 3, upsample="bilinear")
