"""DLKUNet (seed paper dlkunet.txt): Table 1 parameters and FLOPs, the blocks' geometry in 2D/3D, the paper's depth
rule and nnunet-ext's width rule on plans, Table 5's variants, the hook guard of the in-place ReLUs (trainers and loss
schedules: test_dlkunet_trainers.py; the tiny end-to-end ``nnUNetv2_train`` + ``nnUNetv2_predict`` in 2d:
tests/integration/test_dlkunet.py; the registry-wide contract test covers every variant's blocks on plans)."""
import pytest
import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.utils.flop_counter import FlopCounterMode

from nnunet_ext import architectures as A
from nnunet_ext.architectures.dlkunet import DFB, TABLE1_PAPER, DLKUNet, LargeKernelAttention

VARIANTS = ["s", "m", "l"]


def _meta_paper_net(v):
    spec = A.get_spec(f"dlkunet_{v}")
    with torch.device("meta"):
        return spec.cls(**spec.default_kwargs())


# --------------------------------------------------------------------------------------------- Table 1
@pytest.mark.parametrize("v", VARIANTS)
def test_table1_parameters_within_3_percent(v, meta_model):
    net = meta_model(f"dlkunet_{v}")
    n = sum(p.numel() for p in net.parameters() if p.requires_grad)
    paper = TABLE1_PAPER[v][0] * 1e6
    assert abs(n - paper) / paper < 0.03, f"DLKUNet-{v.upper()}: {n / 1e6:.3f} M vs Table 1 {paper / 1e6} M"
    # Table 1's structure: EBlocks = stages, DFBs = stages - 1, skip channels {96, 192, ...}
    n_stages = {"s": 3, "m": 4, "l": 5}[v]
    assert len(net.encoder.stages) == n_stages and len(net.decoder.stages) == n_stages - 1
    assert net.features_per_stage[:-1] == [96 * 2 ** i for i in range(n_stages - 1)]


def _torchinfo_mult_adds(net, x):
    """torchinfo's "Total mult-adds" convention for convolutions (what the authors' scripts print): parameters of
    the layer times the output's spatial size. For a transposed convolution this counts every weight at every
    OUTPUT voxel, i.e. stride**dim times its true multiply-accumulates."""
    total = [0]

    def hook(mod, inp, out):
        total[0] += sum(p.numel() for p in mod.parameters(recurse=False)) * out[0, 0].numel()

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, _ConvNd)]
    net(x)
    for h in hooks:
        h.remove()
    return total[0]


def _true_macs(net, x):
    """Multiply-accumulates of every convolution (weights x positions they are applied at), bias adds excluded."""
    total = [0]

    def hook(mod, inp, out):
        w = mod.weight
        if isinstance(mod, nn.modules.conv._ConvTransposeNd):  # each weight applied once per INPUT voxel
            total[0] += w.numel() * inp[0][0, 0].numel()
        else:
            total[0] += w.numel() * out[0, 0].numel()

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, _ConvNd)]
    net(x)
    for h in hooks:
        h.remove()
    return total[0]


@pytest.mark.parametrize("v", VARIANTS)
def test_table1_flops_at_224(v):
    """FlopCounterMode (2 FLOPs per multiply-add) on the meta device at 224x224 = 2 x the true MACs; Table 1's
    "GFLOPs" are torchinfo mult-adds (MACs, transposed convolutions counted per output voxel), not FLOPs."""
    net = _meta_paper_net(v)
    x = torch.empty(1, 1, 224, 224, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(x)
    flops = counter.get_total_flops()
    with torch.no_grad():
        macs = _true_macs(net, x)
        ti = _torchinfo_mult_adds(net, x)
    assert flops == 2 * macs
    paper = TABLE1_PAPER[v][1] * 1e9
    assert abs(ti - paper) / paper < 0.005, f"torchinfo mult-adds {ti / 1e9:.3f} G vs Table 1 {paper / 1e9} G"
    # neither FLOPs nor true MACs reproduce the printed figure
    assert abs(flops - paper) / paper > 0.2 and abs(macs - paper) / paper > 0.2


def test_table4_flops_at_512():
    """Sec. 5 / Table 4: DLKUNet-L at 512x512 "154.86G" -- same convention."""
    net = _meta_paper_net("l")
    with torch.no_grad():
        ti = _torchinfo_mult_adds(net, torch.empty(1, 1, 512, 512, device="meta"))
    assert abs(ti - 154.86e9) / 154.86e9 < 0.005


# --------------------------------------------------------------------------------------------- blocks
def test_dfb_doubles_and_pads_to_odd_skip():
    dfb = DFB(nn.Conv2d, 16, 8, stride=(2, 2), kernel_size=(3, 3), conv_bias=True, norm_op=nn.BatchNorm2d,
              norm_op_kwargs={})
    below, skip = torch.randn(2, 16, 5, 6), torch.randn(2, 8, 11, 12)
    up = dfb.upsample(below)
    assert tuple(up.shape[2:]) == (10, 12)  # x2 exactly
    assert tuple(dfb(below, skip).shape) == (2, 8, 11, 12)  # zero-padded to the skip (odd axis)
    with pytest.raises(ValueError, match="larger than the skip"):
        dfb(torch.randn(2, 16, 7, 6), skip)


def test_attention_kernels_3d_and_anisotropic():
    lka = LargeKernelAttention(nn.Conv3d, 4, lk_kernel=(1, 5, 5), dilated_kernel=(1, 7, 7), dilation=3)
    assert lka.depthwise.kernel_size == (1, 5, 5) and lka.spatial.kernel_size == (1, 7, 7)
    assert lka.spatial.dilation == (1, 3, 3) and lka.spatial.groups == 4
    z = torch.randn(1, 4, 3, 9, 10)
    assert lka(z).shape == z.shape
    # attention = Hadamard product with the input (eq. 4): a zero input gives a zero output
    assert torch.count_nonzero(lka(torch.zeros_like(z))) == 0

    net = DLKUNet(1, 3, [4, 8, 8], nn.Conv3d, [[1, 3, 3], [3, 3, 3], [3, 3, 3]], [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
                  num_classes=2, norm_op=nn.InstanceNorm3d, norm_op_kwargs={"affine": True})
    att0, att1 = net.encoder.stages[0].attention, net.encoder.stages[1].attention
    assert att0.depthwise.kernel_size == (1, 5, 5) and att1.depthwise.kernel_size == (5, 5, 5)
    assert att1.spatial.kernel_size == (7, 7, 7) and att1.spatial.dilation == (3, 3, 3)
    assert net.encoder.stages[0].conv.dw1.kernel_size == (1, 3, 3)
    assert isinstance(net.encoder.pools[1], nn.MaxPool3d) and net.encoder.pools[2].kernel_size == (2, 2, 2)
    assert isinstance(net.decoder.stages[0].upsample, nn.ConvTranspose3d)
    assert net(torch.randn(1, 1, 5, 9, 13)).shape == (1, 2, 5, 9, 13)


def test_too_small_input_names_stage_and_axis():
    net = A.create("dlkunet_s", input_channels=1, num_classes=2, base_features=4)
    with pytest.raises(ValueError, match=r"stage 2 .*axis 1 of size 1"):
        net(torch.randn(1, 1, 16, 3))
    with pytest.raises(ValueError, match=r"stage 2 .*axis 1"):
        net.compute_conv_feature_map_size((16, 3))


def test_plans_it_cannot_take_are_a_clear_value_error():
    """Bad input (issue 11): too few stages, a patch below the minimum, a patch of the wrong dimension."""
    one_stage = _plans_kwargs(2, [32], [[1, 1]], [[3, 3]])
    with pytest.raises(ValueError, match=r"DLKUNet: n_stages must be >= 2 .* got 1"):
        A.create_from_plans("dlkunet_m_nnunetwidth", one_stage, 1, 2, True)
    with pytest.raises(ValueError, match=r"DLKUNet: the paper's depth 4 .* these have 1"):
        A.create_from_plans("dlkunet_m", one_stage, 1, 2, True)
    with torch.device("meta"):
        net = A.create_from_plans("dlkunet_s", _plans_kwargs(3, [8, 16, 32], [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
                                                             [[1, 3, 3], [3, 3, 3], [3, 3, 3]]), 1, 2, True)
    with pytest.raises(ValueError, match=r"stage 2 cannot max-pool axis 0 of size 1 with stride 2"):
        net.check_input_size((1, 16, 16))
    with pytest.raises(ValueError, match=r"patch \(16, 16\) has 2 axes, the network is 3D"):
        net.compute_conv_feature_map_size((16, 16))
    net.check_input_size((2, 4, 4))  # the minimum passes


def test_separate_channel_conv_is_the_literal_reading(meta_model):
    base = meta_model("dlkunet_s")
    literal = meta_model("dlkunet_s", separate_channel_conv=True)
    count = lambda m: sum(p.numel() for p in m.parameters())
    # a second 1x1 conv per attention part: C^2 + C more per block -> outside Table 1
    extra = sum(c * c + c for c in [96, 192, 384, 192, 96])
    assert count(literal) - count(base) == extra
    assert abs(count(literal) - 1.13e6) / 1.13e6 > 0.03


def test_attention_is_eq4_hadamard_without_residual_by_default(meta_model):
    """eq. 4 / authors' code: Z_l = Z (x) A; the residual (Z (x) A + Z) only with attention_residual=True."""
    torch.manual_seed(0)
    plain = LargeKernelAttention(nn.Conv2d, 4)
    res = LargeKernelAttention(nn.Conv2d, 4, residual=True)
    res.load_state_dict(plain.state_dict())  # parameter-free switch: same state_dict
    z = torch.randn(2, 4, 9, 11)
    with torch.no_grad():
        a = plain.pointwise(plain.spatial(plain.depthwise(z)))
        torch.testing.assert_close(plain(z), z * a)
        torch.testing.assert_close(res(z), z * a + z)
    net = meta_model("dlkunet_s")
    assert not any(m.residual for m in net.modules() if isinstance(m, LargeKernelAttention))
    assert all(m.residual for m in meta_model("dlkunet_s", attention_residual=True).modules()
               if isinstance(m, LargeKernelAttention))


def test_relu_after_second_norm_switch(meta_model):
    """Convolution part: ReLU after the second BN by default (text + authors' code), eq. 2 literally with
    relu_after_norm2=False; same parameters either way (Table 1 unchanged)."""
    from nnunet_ext.architectures.dlkunet import ConvPart

    torch.manual_seed(0)
    on = ConvPart(nn.Conv2d, 3, 5, 3, True, nn.BatchNorm2d, {})
    off = ConvPart(nn.Conv2d, 3, 5, 3, True, nn.BatchNorm2d, {}, relu_after_norm2=False)
    off.load_state_dict(on.state_dict())
    on.eval(), off.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        y_off = off(x)
        torch.testing.assert_close(on(x), torch.relu(y_off))
    assert (y_off < 0).any()  # eq. 2 literally: signed output
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(meta_model("dlkunet_m", relu_after_norm2=False)) == count(meta_model("dlkunet_m"))


def _plans_kwargs(dim, features, strides, kernels):
    n = len(strides)
    return dict(n_stages=n, features_per_stage=features, conv_op=f"torch.nn.Conv{dim}d", kernel_sizes=kernels,
                strides=strides, n_conv_per_stage=[2] * n, n_conv_per_stage_decoder=[2] * (n - 1), conv_bias=True,
                norm_op=f"torch.nn.InstanceNorm{dim}d", norm_op_kwargs={"eps": 1e-5, "affine": True},
                dropout_op=None, dropout_op_kwargs=None, nonlin="torch.nn.LeakyReLU", nonlin_kwargs={"inplace": True})


def test_plans_adaptation_uses_variant_widths():
    """nnunet-ext's width rule (``dlkunet_*_nnunetwidth``): the plans' depth and strides, the plans' widths times
    1/4 (S), 1/2 (M), 1 (L) = Table 1's widest stages 384 : 768 : 1536; C = 96 doubling, capped, with base_features."""
    kw = _plans_kwargs(2, [32, 64, 128, 256, 512, 512], [[1, 1]] + [[2, 2]] * 5, [[3, 3]] * 6)
    with torch.device("meta"):
        nets = {v: A.create_from_plans(f"dlkunet_{v}_nnunetwidth", kw, 1, 3, True) for v in VARIANTS}
        paper_rule = A.create_from_plans("dlkunet_s_nnunetwidth", kw, 1, 3, True, base_features=96,
                                         max_features=384)
    assert nets["s"].features_per_stage == [8, 16, 32, 64, 128, 128]
    assert nets["m"].features_per_stage == [16, 32, 64, 128, 256, 256]
    assert nets["l"].features_per_stage == [32, 64, 128, 256, 512, 512]
    assert all(len(n.encoder.stages) == 6 for n in nets.values())  # nnU-Net's depth: deep supervision scales match
    assert paper_rule.features_per_stage == [96, 192, 384, 384, 384, 384]
    assert isinstance(nets["s"].encoder.stages[0].conv.norm1, nn.InstanceNorm2d)
    with pytest.raises(ValueError, match="width_factor"):
        A.create_from_plans("dlkunet_s", kw, 1, 3, True, width_factor=0)


def _params_flops(net, patch):
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.empty(1, 1, *patch, device="meta"))
    return sum(p.numel() for p in net.parameters()), counter.get_total_flops()


@pytest.mark.parametrize("dim,patch,features,strides,kernels", [
    (2, (64, 48), [32, 64, 128, 256], [[1, 1], [2, 2], [2, 2], [2, 2]], [[3, 3]] * 4),
    (3, (8, 32, 32), [32, 64, 128, 256, 320], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]],
     [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]])])
def test_variants_distinct_on_plans_and_s_below_stock(dim, patch, features, strides, kernels):
    """nnunet-ext's width rule: on the same plans each step S -> M -> L is >= 1.5x in parameters and in forward FLOPs (meta
    device), and S has fewer parameters than stock nnU-Net's PlainConvUNet on those plans."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    from nnunet_ext.architectures._registry import _resolve_imports

    kw = _plans_kwargs(dim, features, strides, kernels)
    with torch.device("meta"):
        nets = {v: A.create_from_plans(f"dlkunet_{v}_nnunetwidth", kw, 1, 2, False) for v in VARIANTS}
        k = _resolve_imports(kw)
        stock = PlainConvUNet(1, k["n_stages"], k["features_per_stage"], k["conv_op"], k["kernel_sizes"],
                              k["strides"], k["n_conv_per_stage"], 2, k["n_conv_per_stage_decoder"], True,
                              k["norm_op"], k["norm_op_kwargs"], None, None, k["nonlin"], k["nonlin_kwargs"])
    pf = {v: _params_flops(n, patch) for v, n in nets.items()}
    for a, b in (("s", "m"), ("m", "l")):
        assert pf[b][0] >= 1.5 * pf[a][0], (a, b, "params", pf)
        assert pf[b][1] >= 1.5 * pf[a][1], (a, b, "FLOPs", pf)
    assert pf["s"][0] < sum(p.numel() for p in stock.parameters())


# --------------------------------------------------------------------------------------------- the paper's rule on plans
def _pancreas_arch_kwargs(patch, spacing):
    from nnunet_ext.plans.synth import explicit_plans

    plans, _, conf = explicit_plans(patch, 2, spacing=spacing)
    return plans["configurations"][conf]["architecture"]["arch_kwargs"]


@pytest.mark.parametrize("patch,spacing", [((40, 224, 224), (2.5, 0.8, 0.8)), ((224, 224), (0.8, 0.8))])
def test_paper_rule_on_plans_takes_the_first_stages(patch, spacing):
    """Sec. 3.4 / Table 1 on plans: 3 / 4 / 5 encoder stages = the plans' first stages (strides, depthwise kernels),
    C = 96 doubling per stage; the attention keeps 1 on axes where the plans' kernel is 1."""
    kw = _pancreas_arch_kwargs(patch, spacing)
    assert kw["n_stages"] >= 5
    for v, n in (("s", 3), ("m", 4), ("l", 5)):
        with torch.device("meta"):
            net = A.create_from_plans(f"dlkunet_{v}", kw, 1, 2, True)
        assert net.features_per_stage == [96 * 2 ** s for s in range(n)]
        assert [list(s) for s in net.encoder.strides] == [list(s) for s in kw["strides"][:n]]
        for s, stage in enumerate(net.encoder.stages):
            assert list(stage.conv.dw1.kernel_size) == list(kw["kernel_sizes"][s])
            assert [k > 1 for k in stage.attention.depthwise.kernel_size] == [k > 1 for k in kw["kernel_sizes"][s]]
        assert len(net.decoder.stages) == n - 1
        with torch.no_grad():
            out = net(torch.empty(1, 1, *patch, device="meta"))
        assert len(out) == n - 1 and tuple(out[0].shape[2:]) == tuple(patch)


@pytest.mark.parametrize("v,n", [("s", 3), ("m", 4), ("l", 5), ("l_5dw", 5), ("l_lka2", 5)])
def test_paper_depth_the_plans_cannot_give_is_a_value_error(v, n):
    kw = _plans_kwargs(2, [32] * (n - 1), [[1, 1]] + [[2, 2]] * (n - 2), [[3, 3]] * (n - 1))
    with pytest.raises(ValueError, match=rf"^DLKUNet: the paper's depth {n} .* these have {n - 1}$"):
        A.create_from_plans(f"dlkunet_{v}", kw, 1, 2, True)


# --------------------------------------------------------------------------------------------- Table 5
#: Table 5: (the convolution part's depthwise kernel, the attention's depthwise kernel, its dilated kernel)
TABLE5 = {"5dw": (5, 5, 7), "7dw": (7, 5, 7), "lka1": (3, 3, 7), "lka2": (3, 5, 5)}


@pytest.mark.parametrize("key", list(TABLE5))
def test_table5_variants_are_dlkunet_l_with_other_kernels(key, meta_model):
    dw, lk, dil = TABLE5[key]
    net, base = meta_model(f"dlkunet_l_{key}"), meta_model("dlkunet_l")
    assert net.features_per_stage == base.features_per_stage and len(net.encoder.stages) == 5
    blocks = [s for s in net.encoder.stages] + [d.block for d in net.decoder.stages]
    for b in blocks:
        assert b.conv.dw1.kernel_size == b.conv.dw2.kernel_size == (dw, dw)
        assert b.attention.depthwise.kernel_size == (lk, lk) and b.attention.spatial.kernel_size == (dil, dil)
        assert b.attention.spatial.dilation == (3, 3)
    # only the depthwise kernels differ from DLKUNet-L: (k^2 - k0^2) weights per channel of each one changed
    chans = sum(b.conv.dw1.in_channels + b.conv.dw2.in_channels for b in blocks)
    att = sum(b.attention.channels for b in blocks)
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(net) - count(base) == chans * (dw * dw - 9) + att * (lk * lk - 25 + dil * dil - 49)


# --------------------------------------------------------------------------------------------- hook guard
def test_hooks_on_norms_see_unmutated_outputs_and_backward_runs():
    """The in-place ReLUs run out of place where a hook watches the norm whose output they would overwrite: a full
    backward hook on every norm does not raise, a forward hook sees the output as the norm returned it."""
    torch.manual_seed(0)
    net = A.create_from_plans("dlkunet_s", _plans_kwargs(2, [8, 16, 32], [[1, 1], [2, 2], [2, 2]], [[3, 3]] * 3),
                              1, 2, True, base_features=4)
    seen, grads = [], []
    for m in net.modules():
        if isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d)):
            m.register_forward_hook(lambda mod, i, o: seen.append((o, o.detach().clone())))
            m.register_full_backward_hook(lambda mod, gi, go: grads.append(go[0]))
    out = net(torch.randn(2, 1, 16, 12))
    sum(o.mean() for o in out).backward()
    assert seen and all(torch.equal(o, copy) for o, copy in seen)
    assert any((copy < 0).any() for _, copy in seen)  # the norm outputs are signed: a ReLU in place would show
    assert len(grads) == len(seen)
