"""DLKUNet (seed paper dlkunet.txt): Table 1 parameters and FLOPs, the blocks' geometry in 2D/3D, the loss schedules of
Sec. 4.4 (eqs. 10-13) with nnU-Net's deep supervision, the lookup of trainers built by name (the tiny end-to-end
``nnUNetv2_train`` + ``nnUNetv2_predict`` in 2d: tests/integration/test_dlkunet.py; the registry-wide contract test
covers dlkunet_s/m/l on plans)."""
import math
import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.utils.flop_counter import FlopCounterMode

from nnunet_ext import architectures as A
from nnunet_ext.architectures.dlkunet import DFB, TABLE1_PAPER, DLKUNet, LargeKernelAttention
from nnunet_ext.trainers import get_trainer
from nnunet_ext.trainers.loss_schedules import (DynamicLossMixin, PhaseLossMixin, dynamic_weights,
                                                phase_weights, scaled_weights)

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
    """On plans: the plans' depth and strides, the plans' widths times 1/4 (S), 1/2 (M), 1 (L) = Table 1's widest
    stages 384 : 768 : 1536; the paper's rule (C = 96 doubling, capped) only with base_features."""
    kw = _plans_kwargs(2, [32, 64, 128, 256, 512, 512], [[1, 1]] + [[2, 2]] * 5, [[3, 3]] * 6)
    with torch.device("meta"):
        nets = {v: A.create_from_plans(f"dlkunet_{v}", kw, 1, 3, True) for v in VARIANTS}
        paper_rule = A.create_from_plans("dlkunet_s", kw, 1, 3, True, base_features=96, max_features=384)
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
    """Issue 11: on the same plans each step S -> M -> L is >= 1.5x in parameters and in forward FLOPs (meta
    device), and S has fewer parameters than stock nnU-Net's PlainConvUNet on those plans."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    from nnunet_ext.architectures._registry import _resolve_imports

    kw = _plans_kwargs(dim, features, strides, kernels)
    with torch.device("meta"):
        nets = {v: A.create_from_plans(f"dlkunet_{v}", kw, 1, 2, False) for v in VARIANTS}
        k = _resolve_imports(kw)
        stock = PlainConvUNet(1, k["n_stages"], k["features_per_stage"], k["conv_op"], k["kernel_sizes"],
                              k["strides"], k["n_conv_per_stage"], 2, k["n_conv_per_stage_decoder"], True,
                              k["norm_op"], k["norm_op_kwargs"], None, None, k["nonlin"], k["nonlin_kwargs"])
    pf = {v: _params_flops(n, patch) for v, n in nets.items()}
    for a, b in (("s", "m"), ("m", "l")):
        assert pf[b][0] >= 1.5 * pf[a][0], (a, b, "params", pf)
        assert pf[b][1] >= 1.5 * pf[a][1], (a, b, "FLOPs", pf)
    assert pf["s"][0] < sum(p.numel() for p in stock.parameters())


# --------------------------------------------------------------------------------------------- loss schedules
def _eq12_13(x, N, A_=0.3, B_=0.7, k=None):
    """eqs. 12-13 written out independently (x: 1-based epoch, x0 = N / 2, k = 20 / N)."""
    k = 20 / N if k is None else k
    s = 1 / (1 + np.exp(-k * (x - 0.5 * N)))
    return A_ + (1 - A_) * (1 - s), 1 + (B_ - 1) * (1 - s)


@pytest.mark.parametrize("N", [400, 1000, 10, 1])
def test_phase_weights_eq11(N):
    for epoch in range(N):  # nnU-Net's current_epoch is 0-based; the paper's epochs are 1-based
        x = epoch + 1
        expected = (0.6, 0.4) if x <= N / 2 else (0.7, 0.3)
        assert phase_weights(epoch, N) == expected
    if N == 400:  # eq. 11 literally: [1, 200] and (200, 400]
        assert phase_weights(199, 400) == (0.6, 0.4) and phase_weights(200, 400) == (0.7, 0.3)


@pytest.mark.parametrize("N", [400, 200, 7])
def test_dynamic_weights_eq12_13(N):
    for epoch in sorted({0, 1, N // 4, N // 2 - 1, N // 2, N - 1}):
        a, b = dynamic_weights(epoch, N)
        ea, eb = _eq12_13(epoch + 1, N)
        assert math.isclose(a, ea, abs_tol=1e-12) and math.isclose(b, eb, abs_tol=1e-12)
    # midpoint x = x0: sigma = 1/2
    if N % 2 == 0:
        a, b = dynamic_weights(N // 2 - 1, N)
        assert math.isclose(a, 0.65) and math.isclose(b, 0.85)
    # endpoints: alpha 1 -> A, beta B -> 1, monotone
    a0, b0 = dynamic_weights(0, N)
    a1, b1 = dynamic_weights(N - 1, N)
    if N >= 200:
        assert a0 > 0.999 and abs(b0 - 0.7) < 1e-3 and a1 < 0.301 and b1 > 0.999
    alphas = [dynamic_weights(e, N)[0] for e in range(N)]
    assert all(x > y for x, y in zip(alphas, alphas[1:]))


def test_dynamic_k_matches_public_script_at_200_epochs():
    # k = 20 / num_epochs -> 0.1 at 200 epochs (the authors' script), 0.05 at the paper's 400
    a, b = dynamic_weights(149, 200)
    ea, eb = _eq12_13(150, 200, k=0.1)
    assert math.isclose(a, ea) and math.isclose(b, eb)
    a, b = dynamic_weights(299, 400)
    ea, eb = _eq12_13(300, 400, k=0.05)
    assert math.isclose(a, ea) and math.isclose(b, eb)


class _StandInTrainer:
    """The two methods the mixins override, as nnU-Net's trainer has them (loss built like nnUNetTrainer._build_loss
    with deep supervision: DC_and_CE_loss inside DeepSupervisionWrapper with nnU-Net's scale weights)."""

    def __init__(self, num_epochs, n_scales=3):
        self.num_epochs, self.current_epoch, self.n_scales, self.log = num_epochs, 0, n_scales, []

    def _build_loss(self):
        from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
        from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
        from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
        loss = DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                              weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
        w = np.array([1 / 2 ** i for i in range(self.n_scales)])
        w[-1] = 0
        self.ds_weights = w / w.sum()
        return DeepSupervisionWrapper(loss, self.ds_weights)

    def on_train_epoch_start(self):
        self.log.append(f"epoch {self.current_epoch}")

    def print_to_log_file(self, *args):
        self.log.append(" ".join(str(a) for a in args))


@pytest.mark.parametrize("mixin,fn", [(PhaseLossMixin, phase_weights), (DynamicLossMixin, dynamic_weights)])
def test_schedule_applies_to_every_deep_supervision_scale(mixin, fn):
    N = 10
    trainer = type("T", (mixin, _StandInTrainer), {})(N)
    loss = trainer._build_loss()
    inner = loss.loss
    torch.manual_seed(0)
    outs = [torch.randn(2, 3, 16 // 2 ** i, 16 // 2 ** i) for i in range(3)]
    tgts = [torch.randint(0, 3, (2, 1, 16 // 2 ** i, 16 // 2 ** i)).float() for i in range(3)]
    for epoch in (0, 4, 5, 9):
        trainer.current_epoch = epoch
        trainer.on_train_epoch_start()
        pa, pb = fn(epoch, N)
        a, b = scaled_weights((pa, pb))  # the paper's ratio at nnU-Net's total Dice + CE weight of 2
        assert math.isclose(a + b, 2.0) and math.isclose(a / b, pa / pb)
        assert (inner.weight_dice, inner.weight_ce) == (a, b)
        assert trainer.log[-2] == f"epoch {epoch}"  # nnU-Net's own epoch start still runs
        assert re.search(rf"alpha \(Dice\) = {a:.4f}, beta \(CE\) = {b:.4f}", trainer.log[-1])
        expected = sum(w * (a * inner.dc(o, t) + b * inner.ce(o, t[:, 0]))
                       for w, o, t in zip(trainer.ds_weights, outs, tgts) if w != 0)
        assert torch.allclose(loss(outs, tgts), expected)
    assert trainer.log and phase_weights(0, N) != phase_weights(9, N)


def test_scaled_weights_and_raw_switch():
    assert scaled_weights(phase_weights(0, 400)) == pytest.approx((1.2, 0.8))
    assert scaled_weights(phase_weights(399, 400)) == pytest.approx((1.4, 0.6))
    a0, b0 = scaled_weights(dynamic_weights(0, 400))
    a1, b1 = scaled_weights(dynamic_weights(399, 400))
    assert a0 > b0 and a1 < b1 and math.isclose(a1 + b1, 2.0)  # eqs. 12-13's direction: Dice down, CE up
    with pytest.raises(ValueError, match="positive"):
        scaled_weights((0.0, 0.0))
    raw = type("T", (PhaseLossMixin, _StandInTrainer), {"loss_weight_total": None})(10)
    raw._build_loss()
    assert (raw._scheduled_loss.weight_dice, raw._scheduled_loss.weight_ce) == phase_weights(0, 10)


def test_schedule_suffix_on_any_trainer():
    for name, mixin in [("nnUNetTrainerDLKUNetM_phaseloss", PhaseLossMixin),
                        ("nnUNetTrainerPlainUNet_dynloss_5epochs", DynamicLossMixin),
                        ("nnUNetTrainerDLKUNetS_dynloss_1epoch_4iters", DynamicLossMixin)]:
        cls = get_trainer(name)
        assert cls.__mro__[1] is mixin and cls is get_trainer(name)
    assert get_trainer("nnUNetTrainerDLKUNetS_dynloss_1epoch_4iters").merged_hparams() == \
        {"num_epochs": 1, "num_iterations_per_epoch": 4, "num_val_iterations_per_epoch": 1}
    assert get_trainer("nnUNetTrainerDLKUNetS_dynloss_1epoch_4iters").arch == "dlkunet_s"
    # nnU-Net's own lookup finds such a name as this very class: test_discovery's stock-lookup sample
    with pytest.raises(AttributeError):
        get_trainer("nnUNetTrainerDLKUNetS_phaseloss_dynloss")
