"""ResDSN (resdsn_c2f Sec. 3.4, Table 1) and the two-stage 3D U-Net: structure and parameter count of the paper
configuration, the Table 1 connection pattern of every variant, the deconvolution size rule, the paper's
deep-supervision weighting (the short end-to-end run with the stock nnU-Net commands:
tests/integration/test_resdsn.py).

The registry contract (shapes at every deep-supervision scale, gradients, state_dict, feature-map size) is covered
by tests/unit/test_registry.py for every registered variant."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from nnunet_ext import architectures as A
from nnunet_ext.architectures.resdsn import XI_1, XI_2, ResDSN, deconv_kernel_and_padding

VARIANTS = {  # registered name: (long residual, short residual), resdsn_c2f Table 1
    "resdsn": (True, False), "resdsn_full": (True, True), "sresdsn": (False, True), "dsn": (False, False)}


# ------------------------------------------------------------------------------------------ paper configuration
def _paper_param_count(short: bool) -> int:
    """Parameters of the network described in resdsn_c2f Sec. 3.4 / Fig. 3, written out layer by layer."""
    def conv(cin, cout, k=3):  # 3x3x3 conv with bias + BN (gamma, beta)
        return k ** 3 * cin * cout + cout + 2 * cout

    enc = [(1, 32)] + [(32, 64), (64, 64)] + [(64, 128), (128, 128)] + [(128, 256), (256, 256)]  # Conv1a..Conv4b
    deconv = [(256, 128), (128, 64), (64, 32)]  # DeConv3a, DeConv2a, DeConv1a: 4x4x4, bias
    dec = [(128, 128)] * 2 + [(64, 64)] * 2 + [(32, 32)] * 2  # two convs per decoder step
    heads = [32, 64, 128]  # 1x1x1 classifiers on Res/Conv1b (main), Conv2b, Conv3b; 2 classes
    n = sum(conv(a, b) for a, b in enc + dec) + sum(64 * a * b + b for a, b in deconv) + sum(2 * c + 2 for c in heads)
    if short:  # 1x1x1 projection shortcuts where an encoder step changes the channels (1->32, 32->64, ...)
        n += sum(a * b + b for a, b in [(1, 32), (32, 64), (64, 128), (128, 256)])
    return n


@pytest.mark.parametrize("name", list(VARIANTS))
def test_paper_configuration_parameter_count(name, meta_model):
    net = meta_model(name)
    count = sum(p.numel() for p in net.parameters())
    assert count == _paper_param_count(short=VARIANTS[name][1])
    if name == "resdsn":
        assert count == 7_403_046  # documented in docs/resdsn.md


def test_paper_configuration_layer_shapes(meta_model):
    net = meta_model("resdsn")
    convs = [m for m in net.encoder.modules() if isinstance(m, nn.Conv3d)]
    # Conv1a 32; Conv2a-b 64; Conv3a-b 128; Conv4a-b 256, all 3x3x3 with BN and ReLU
    assert [m.out_channels for m in convs] == [32, 64, 64, 128, 128, 256, 256]
    assert all(m.kernel_size == (3, 3, 3) and m.padding == (1, 1, 1) for m in convs)
    assert sum(isinstance(m, nn.BatchNorm3d) for m in net.modules()) == 7 + 6
    assert sum(isinstance(m, nn.ReLU) for m in net.modules()) == 7 + 6
    pools = [m for m in net.encoder.pools if isinstance(m, nn.MaxPool3d)]
    assert len(pools) == 3 and all(p.kernel_size == [2, 2, 2] and p.stride == [2, 2, 2] for p in pools)
    ups = list(net.decoder.transpconvs)
    assert [(u.in_channels, u.out_channels) for u in ups] == [(256, 128), (128, 64), (64, 32)]
    assert all(u.kernel_size == (4, 4, 4) and u.stride == (2, 2, 2) and u.padding == (1, 1, 1) for u in ups)
    # long residual = sum: decoder convs take the skip's channels, not skip + upsampled (concatenation)
    assert [s.convs.convs[0].conv.in_channels for s in net.decoder.stages] == [128, 64, 32]
    assert [len(s.convs.convs) for s in net.decoder.stages] == [2, 2, 2]
    heads = list(net.decoder.seg_layers)
    assert [(h.in_channels, h.out_channels, h.kernel_size) for h in heads] == \
           [(32, 2, (1, 1, 1)), (64, 2, (1, 1, 1)), (128, 2, (1, 1, 1))]
    # 64^3 input (Sec. 4.1): main output at input size, auxiliary heads at Conv2b (32^3) and Conv3b (16^3); shapes
    # only, so on the meta device (a CPU forward at 64^3 takes seconds; test_registry runs every variant on data)
    with torch.no_grad():
        out = net(torch.empty(1, 1, 64, 64, 64, device="meta"))
    assert [tuple(o.shape) for o in out] == [(1, 2, 64, 64, 64), (1, 2, 32, 32, 32), (1, 2, 16, 16, 16)]


# ------------------------------------------------------------------------------------ Table 1 connection pattern
def _capture(net, x):
    """Encoder stage-0 output, last deconvolution output, last decoder stack's input, conv part and output."""
    got = {}
    last = net.decoder.stages[-1]
    hooks = [net.encoder.stages[0].register_forward_hook(lambda m, i, o: got.__setitem__("skip0", o.clone())),
             net.decoder.transpconvs[-1].register_forward_hook(lambda m, i, o: got.__setitem__("up0", o.clone())),
             last.register_forward_hook(lambda m, i, o: got.update(stack_in=i[0].clone(), stack_out=o.clone())),
             last.convs.register_forward_hook(lambda m, i, o: got.__setitem__("convs_out", o.clone()))]
    with torch.no_grad():
        net.eval()
        net(x)
    for h in hooks:
        h.remove()
    return got


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("dim", [2, 3])
def test_residual_connections_follow_table1(name, dim):
    long_res, short_res = VARIANTS[name]
    size = (12, 16, 20)[-dim:]
    net = A.create(name, conv_op=f"torch.nn.Conv{dim}d", kernel_sizes=[[3] * dim] * 3, strides=[[1] * dim] +
                   [[2] * dim] * 2, n_stages=3, features_per_stage=[4, 8, 8], n_conv_per_stage=[1, 2, 2],
                   n_conv_per_stage_decoder=[2, 2], norm_op=f"torch.nn.BatchNorm{dim}d", num_classes=3)
    got = _capture(net, torch.randn(1, 1, *size))
    expected_in = got["up0"] + got["skip0"] if long_res else got["up0"]
    assert torch.allclose(got["stack_in"], expected_in, atol=1e-6)
    expected_out = got["convs_out"] + got["stack_in"] if short_res else got["convs_out"]
    assert torch.allclose(got["stack_out"], expected_out, atol=1e-6)
    has_proj = any(getattr(m, "projection", None) is not None for m in net.modules())
    assert has_proj == short_res


# --------------------------------------------------------------------------------------- deconvolution size rule
@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_deconv_rule_multiplies_size_exactly(stride):
    k, p = deconv_kernel_and_padding(stride)
    assert (k, p) == {1: (3, 1), 2: (4, 1)}.get(stride, (k, p))
    up = nn.ConvTranspose1d(1, 1, k, stride, p)
    for n in range(1, 9):
        assert up(torch.zeros(1, 1, n)).shape[-1] == stride * n


def test_odd_sizes_and_unpooled_axes_give_input_size():
    """Plans-like anisotropic strides, odd lengths on pooled and unpooled axes: every output at its stage size,
    the main output exactly at input size (the deconvolution matches the skip, output_padding for the odd row)."""
    net = ResDSN(1, 4, [4, 8, 8, 8], nn.Conv3d, 3, [[1, 1, 1], [1, 2, 2], [2, 2, 2], [1, 2, 3]], 1, 2, 1,
                 norm_op=nn.InstanceNorm3d, nonlin=nn.LeakyReLU, deep_supervision=True)
    x = torch.randn(1, 1, 9, 27, 31)
    net.eval()
    with torch.no_grad():
        out = net(x)
    assert [tuple(o.shape[2:]) for o in out] == [(9, 27, 31), (9, 13, 15), (4, 6, 7)]
    ks = [(u.kernel_size, u.padding) for u in net.decoder.transpconvs]
    assert ks == [((3, 4, 7), (1, 1, 2)), ((4, 4, 4), (1, 1, 1)), ((3, 4, 4), (1, 1, 1))]


def test_bad_shapes_raise_naming_stage_and_axis():
    net = A.create("resdsn", features_per_stage=[2, 2, 2, 2])
    with pytest.raises(ValueError, match=r"stage 3 pools axis 1 by 2 but the feature map has size 1"):
        net(torch.randn(1, 1, 16, 4, 16))
    with pytest.raises(ValueError, match=r"stage 0 axis 2: stride 2"):
        A.create("resdsn", strides=[[1, 1, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]])
    with pytest.raises(ValueError, match=r"stage 1 axis 0: kernel size 4"):
        A.create("resdsn", kernel_sizes=[[3, 3, 3], [4, 3, 3], [3, 3, 3], [3, 3, 3]])
    with pytest.raises(ValueError, match="ds_source"):
        A.create("resdsn", ds_source="middle")


def test_plans_ops_by_default_paper_ops_by_switch():
    kw = dict(n_stages=3, features_per_stage=[4, 8, 16], conv_op="torch.nn.Conv3d", kernel_sizes=[[1, 3, 3]] * 3,
              strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2]], n_conv_per_stage=[2] * 3, n_conv_per_stage_decoder=[2] * 2,
              conv_bias=True, norm_op="torch.nn.InstanceNorm3d", norm_op_kwargs={"eps": 1e-5, "affine": True},
              dropout_op=None, dropout_op_kwargs=None, nonlin="torch.nn.LeakyReLU", nonlin_kwargs={"inplace": True})
    plans_net = A.create_from_plans("resdsn", kw, 1, 2, True)
    paper_net = A.create_from_plans("resdsn", kw, 1, 2, True, paper_norm_nonlin=True)
    kinds = lambda net: {type(m) for m in net.modules()}
    assert {nn.InstanceNorm3d, nn.LeakyReLU} <= kinds(plans_net) and nn.BatchNorm3d not in kinds(plans_net)
    assert {nn.BatchNorm3d, nn.ReLU} <= kinds(paper_net) and nn.InstanceNorm3d not in kinds(paper_net)
    # same trainable parameters (both norms are affine): only the ops differ
    assert {k: v.shape for k, v in plans_net.named_parameters()} == \
           {k: v.shape for k, v in paper_net.named_parameters()}


def test_ds_source_decoder_taps_decoder_features():
    net = A.create("resdsn", ds_source="decoder", features_per_stage=[2, 4, 4, 4])
    got = {}
    net.decoder.stages[1].register_forward_hook(lambda m, i, o: got.__setitem__("dec1", o))
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, 16, 16, 16))
        assert torch.allclose(out[1], net.decoder.seg_layers[1](got["dec1"]))


# ------------------------------------------------------------------------------------------ two-stage U-Net
def test_two_stage_unet_is_plain_unet_with_paper_defaults():
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    net = A.create("two_stage_unet")
    assert type(net) is PlainConvUNet and not net.decoder.deep_supervision
    assert net.encoder.output_channels == [32, 64, 128, 256]
    assert {type(m) for m in net.modules()} >= {nn.BatchNorm3d, nn.ReLU, nn.ConvTranspose3d}
    assert sum(p.numel() for p in net.parameters()) == 5_602_950  # documented in docs/resdsn.md
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 1, 16, 16, 16)).shape == (1, 2, 16, 16, 16)


# ------------------------------------------------------------------------------- paper deep-supervision weights
def _loss_of(trainer_cls, pool_op_kernel_sizes):
    """The trainer's real ``_build_loss`` on a stand-in instance (no plans, no dataset needed)."""
    t = object.__new__(trainer_cls)
    t.label_manager = SimpleNamespace(has_regions=False, ignore_label=None)
    t.configuration_manager = SimpleNamespace(batch_dice=False, pool_op_kernel_sizes=pool_op_kernel_sizes)
    t.enable_deep_supervision, t.is_ddp, t.device = True, False, torch.device("cpu")
    return t._build_loss()


@pytest.mark.parametrize("n_stages", [3, 4, 6])
def test_paper_ds_weights(n_stages):
    from nnunet_ext.trainers.resdsn import nnUNetTrainerResDSN, nnUNetTrainerResDSNPaperDS
    strides = [[1, 1, 1]] + [[2, 2, 2]] * (n_stages - 1)
    paper = _loss_of(nnUNetTrainerResDSNPaperDS, strides)
    stock = _loss_of(nnUNetTrainerResDSN, strides)
    n_out = n_stages - 1
    expected = ([1.0, XI_2, XI_1] + [0.0] * n_out)[:n_out]
    assert list(paper.weight_factors) == expected
    assert list(stock.weight_factors) != expected  # nnU-Net's own weighting stays the default
    # the weighted sum is what the loss computes: sum_d w_d L(output_d, target_d)
    torch.manual_seed(0)
    sizes = [16 // 2 ** i for i in range(n_out)]
    outs = [torch.randn(2, 3, s, s, s) for s in sizes]
    tgts = [torch.randint(0, 3, (2, 1, s, s, s)).float() for s in sizes]
    single = [float(paper.loss(o, t)) for o, t in zip(outs, tgts)]
    assert float(paper(outs, tgts)) == pytest.approx(sum(w * l for w, l in zip(expected, single)), rel=1e-5)


def test_resdsn_trainers_weight_decay_and_names():
    import nnunet_ext.trainers as T
    for name, arch in [("nnUNetTrainerResDSN", "resdsn"), ("nnUNetTrainerFResDSN", "resdsn_full"),
                       ("nnUNetTrainerSResDSN", "sresdsn"), ("nnUNetTrainerDSN", "dsn"),
                       ("nnUNetTrainerResDSNPaperDS", "resdsn"), ("nnUNetTrainerResDSNPaper", "resdsn"),
                       ("nnUNetTrainerTwoStageUNet", "two_stage_unet")]:
        cls = T.get_trainer(name)
        assert cls.arch == arch
        wd = cls.merged_hparams().get("weight_decay")
        assert wd == (5e-4 if "DSN" in name else None)
    assert T.get_trainer("nnUNetTrainerResDSN_1epoch_4iters").merged_hparams()["weight_decay"] == 5e-4
