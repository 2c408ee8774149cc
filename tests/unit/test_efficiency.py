"""The fast execution paths (architectures/_fast.py, issue 15) compute what the reference path computes: per family,
2D and 3D, train and eval mode (eval covers the BatchNorm folding), outputs and every parameter's gradient within
fp32 tolerance; a checkpoint written on the reference path loads into the fast path and gives the same outputs."""
import copy
import io

import pytest
import torch
from torch import nn

from nnunet_ext.architectures import _fast, create_from_plans
from nnunet_ext.plans.synth import explicit_plans
from nnunet_ext.lookup import build_network
from nnunet_ext.trainers import get_trainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

PATCH = {2: (16, 16), 3: (8, 16, 16)}   # 3 stages; 3d: an anisotropic (1, 2, 2) stride
#: per family the networks a fast path acts on: the default trainers and the BatchNorm variants (eval-mode folding);
#: DMC-Net's default in 2d (dense DMSC, InstanceNorm) and ResDSN's default (InstanceNorm) have none, their
#: BatchNorm variants stand for them there
TRAINERS = ["nnUNetTrainerDMCNetPaper", "nnUNetTrainerResDSNPaper", "nnUNetTrainerDLKUNetS", "dlkunet_s_bn",
            "nnUNetTrainerMoNet", "nnUNetTrainerTwoStageUNet"]
CASES = [(n, 2) for n in TRAINERS] + [(n, 3) for n in TRAINERS + ["nnUNetTrainerDMCNet"]]


def _plans(dim, patch=None):
    """Stock-planned tiny plans, narrowed to 8 features at full resolution (a test of math, not of scale)."""
    plans, _, cfg = explicit_plans(patch or PATCH[dim], batch_size=2)
    kw = plans["configurations"][cfg]["architecture"]["arch_kwargs"]
    kw["features_per_stage"] = [8 * 2 ** s for s in range(kw["n_stages"])]
    return PlansManager(plans), cfg


def _calibrate_bn(net, dim, patch=None):
    """Random BatchNorm affine parameters and running statistics of the data (cumulative average of two train-mode
    passes): an eval-mode network with statistics far from its activations overflows at these tiny widths."""
    g = torch.Generator().manual_seed(3)
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
        m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
        m.reset_running_stats()
        m.momentum = None
    if bns:
        net.train()
        with torch.no_grad(), _fast.reference_mode():
            for _ in range(2):
                net(torch.randn(2, 1, *(patch or PATCH[dim]), generator=g))
        for m in bns:
            m.momentum = 0.1
    return net


def _build(name, dim, patch=None):
    torch.manual_seed(0)
    pm, cfg = _plans(dim, patch)
    cm = pm.get_configuration(cfg)
    if name == "dlkunet_s_bn":   # DLKUNet with the paper's BatchNorm (the trainers take the plans' InstanceNorm)
        kw = dict(cm.network_arch_init_kwargs, norm_op=getattr(nn, f"BatchNorm{dim}d"))
        net = create_from_plans("dlkunet_s_nnunetwidth", kw, 1, 3, True)
    else:
        net = build_network(get_trainer(name), pm, cm, 1, 3, True)
    return _calibrate_bn(net, dim, patch)


def _outs(o):
    return list(o) if isinstance(o, (list, tuple)) else [o]


def _run(net, x, train: bool, grad: bool, reference: bool):
    """Outputs and parameter gradients of one forward(+backward) on the chosen path (same dropout draws)."""
    net.train(train)
    net.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    with _fast.reference_mode(reference), torch.set_grad_enabled(grad):
        outs = _outs(net(x))
        if grad:
            g = torch.Generator().manual_seed(2)
            sum((o * torch.randn(o.shape, generator=g)).sum() for o in outs).backward()
    grads = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
    return [o.detach() for o in outs], grads


def _close(a, b, what, scale=None, tol=1e-4):
    """Equal within ``tol`` relative and ``tol`` of ``scale`` absolute (default scale: the largest entry of ``a``;
    for gradients the largest gradient of the network: a bias in front of InstanceNorm has a true gradient of 0)."""
    scale = max(float(a.abs().max()) if scale is None else scale, 1e-30)
    torch.testing.assert_close(b, a, rtol=tol, atol=tol * scale, msg=lambda m: f"{what}: {m}")


def _err(got, truth):
    """Largest deviation of ``got`` from the float64 ``truth`` relative to the largest entry of the whole set."""
    scale = max(max(float(t.abs().max()) for t in truth), 1e-30)
    return max(float((g.double() - t).abs().max()) for g, t in zip(got, truth)) / scale


MODES = ((True, True), (False, True), (False, False))   # (train mode, autograd): eval covers BatchNorm folding


@pytest.mark.parametrize("name,dim", CASES)
def test_fast_path_equals_reference(name, dim):
    """In float64 (eval mode with autograd: every fast path runs, BatchNorm folding, channels-last convolutions
    and the ELU backward) the two paths agree to 1e-9: the same function, no rounding to hide behind. In float32
    (the kernels that actually run: oneDNN's channels-last depth-wise convolutions have no float64 version), train
    mode, eval mode and inference, the fast path is as close to the float64 result as the reference path is (at
    most 2x its error + 1e-5 of the largest entry)."""
    net = _build(name, dim)
    init = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(2, 1, *PATCH[dim], generator=torch.Generator().manual_seed(4))
    n64 = copy.deepcopy(net).double()
    truth = {}
    for train in (True, False):
        n64.load_state_dict(init)
        ro, rg = _run(n64, x.double(), train, True, reference=True)
        truth[train] = (ro, rg)
        if not train:   # float64: equal
            n64.load_state_dict(init)
            fo, fg = _run(n64, x.double(), train, True, reference=False)
            assert rg.keys() == fg.keys() and len(ro) == len(fo)
            gscale = max((float(v.abs().max()) for v in rg.values()), default=0.0)
            for i, (a, b) in enumerate(zip(ro, fo)):
                _close(a, b, f"{name} {dim}d eval float64 output {i}", tol=1e-9)
            for k in rg:
                _close(rg[k], fg[k], f"{name} {dim}d eval float64 grad of {k}", gscale, tol=1e-9)
    for train, grad in MODES:
        mode = f"{name} {dim}d {'train' if train else 'eval'}{'' if grad else ' no-grad'}"
        ro64, rg64 = truth[train]
        net.load_state_dict(init)
        ro, rg = _run(net, x, train, grad, reference=True)
        ref_state = {k: v.clone() for k, v in net.state_dict().items()}
        net.load_state_dict(init)
        fo, fg = _run(net, x, train, grad, reference=False)
        assert all(o.is_contiguous() for o in fo), f"{mode}: an output is not contiguous"
        assert _err(fo, ro64) <= 2 * _err(ro, ro64) + 1e-5, f"{mode}: outputs"
        if grad:
            keys = list(rg64)
            assert rg.keys() == fg.keys() == rg64.keys()
            e_ref, e_fast = _err([rg[k] for k in keys], [rg64[k] for k in keys]), \
                _err([fg[k] for k in keys], [rg64[k] for k in keys])
            assert e_fast <= 2 * e_ref + 1e-5, f"{mode}: gradients off by {e_fast:.2e} (reference {e_ref:.2e})"
        if train:   # BatchNorm running statistics
            for (k, a), b in zip(ref_state.items(), net.state_dict().values()):
                _close(a.float(), b.float(), f"{mode} state {k}", tol=1e-3)


@pytest.mark.parametrize("name", ["nnUNetTrainerDLKUNetS", "nnUNetTrainerMoNet", "nnUNetTrainerDMCNetPaper"])
def test_reference_checkpoint_loads_into_the_fast_path(name):
    dim = 3
    net = _build(name, dim).eval()
    x = torch.randn(1, 1, *PATCH[dim], generator=torch.Generator().manual_seed(5))
    with _fast.reference_mode(), torch.no_grad():
        want = _outs(net(x))
        buf = io.BytesIO()
        torch.save(net.state_dict(), buf)
    fresh = _build(name, dim)
    buf.seek(0)
    sd = torch.load(buf)
    assert [(k, v.shape) for k, v in sd.items()] == [(k, v.shape) for k, v in fresh.state_dict().items()]
    fresh.load_state_dict(sd, strict=True)
    fresh.eval()
    with _fast.reference_mode(False), torch.no_grad():
        got = _outs(fresh(x))
    for a, b in zip(want, got):
        _close(a, b, f"{name} reloaded")


def test_switch_and_rules(monkeypatch):
    """The one switch (env var, context manager) and the per-operator rules actually select the fast kernels."""
    dw = _fast.DWConv3d(4, 4, 7, padding=9, dilation=3, groups=4)
    x = torch.randn(1, 4, 8, 8, 8)
    monkeypatch.delenv(_fast.ENV_REFERENCE, raising=False)
    assert not _fast.reference()
    with torch.no_grad():
        assert _fast.channels_last_pays(dw, x)                  # dilated 3D depth-wise: channels-last
        with _fast.reference_mode():
            assert _fast.reference() and not _fast.channels_last_pays(dw, x)
            with _fast.reference_mode(False):
                assert not _fast.reference()
            assert _fast.reference()
    assert not _fast.reference()
    monkeypatch.setenv(_fast.ENV_REFERENCE, "1")
    assert _fast.reference() and not _fast.channels_last_pays(dw, x)
    with _fast.reference_mode(False):
        assert not _fast.reference()
    monkeypatch.setenv(_fast.ENV_REFERENCE, "0")
    dw5 = _fast.DWConv3d(4, 4, 5, padding=2, groups=4)
    with torch.no_grad():
        assert not _fast.channels_last_pays(dw5, x)             # inference: undilated depth-wise stays contiguous
    assert _fast.channels_last_pays(dw5, x)                      # training (weights need grad): channels-last
    monkeypatch.setenv(_fast.ENV_CL_DEVICES, "cuda")
    assert not _fast.channels_last_pays(dw5, x)                  # not on a device type that is not listed
    bn = nn.BatchNorm3d(4).eval()
    assert _fast.foldable_bn(bn) and not _fast.foldable_bn(bn.train()) and not _fast.foldable_bn(nn.InstanceNorm3d(4))
    # the families use the fast classes (same state_dict keys as plain convolutions)
    net = _build("nnUNetTrainerDLKUNetS", 3)
    assert any(isinstance(m, _fast.DWConv3d) for m in net.modules())
    assert any(isinstance(m, _fast.FoldingConvDropoutNormReLU) for m in _build("nnUNetTrainerResDSNPaper", 3).modules())
    # a forward hook on a convolution still sees its call in eval mode (folding steps aside for a watched pair)
    monet = _build("nnUNetTrainerMoNet", 2).eval()
    conv = next(m for m in monet.modules() if isinstance(m, nn.Conv2d))
    seen = []
    conv.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        monet(torch.randn(1, 1, *PATCH[2]))
    assert len(seen) == 1


@pytest.mark.parametrize("shape,k,d", [((1, 3, 10, 11), (7, 7), (3, 3)), ((2, 2, 5, 7, 8), (1, 7, 7), (1, 3, 3)),
                                       ((1, 2, 7, 9, 6), (5, 5, 5), (2, 2, 2))])
def test_dilated_as_phases_is_the_dilated_convolution(shape, k, d):
    """Space-to-batch equals the dilated convolution (float64), sizes not divisible by the dilation included."""
    conv_op = _fast.DWConv2d if len(shape) == 4 else _fast.DWConv3d
    c = shape[1]
    conv = conv_op(c, c, k, padding=[di * (ki // 2) for ki, di in zip(k, d)], dilation=d, groups=c).double()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    with _fast.reference_mode(False):
        assert _fast._phases_apply(conv, x)
        got = _fast.dilated_as_phases(conv, x, conv.weight, conv.bias)
    want = conv._conv_forward(x, conv.weight, conv.bias)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g = torch.randn(want.shape, dtype=torch.float64)
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in
               zip(torch.autograd.grad(got, (x, conv.weight), g), torch.autograd.grad(want, (x, conv.weight), g)))


def test_dense_dilated_3d_convolutions_run_on_phases_and_equal_the_dilated_one():
    """MoNet's dense dilated 3D convolutions take the phase path (fast path only, not 2D, not undilated), and
    conv_norm gives the dilated convolution's result with and without a folded eval-mode BatchNorm (float64)."""
    torch.manual_seed(0)
    conv = nn.Conv3d(4, 6, 3, padding=2, dilation=2, bias=False).double()
    norm = nn.BatchNorm3d(6).double()
    norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 4, 7, 10, 9, dtype=torch.float64, requires_grad=True)
    assert _fast._dense_phases(conv, x)
    assert not _fast._dense_phases(nn.Conv2d(4, 6, 3, padding=2, dilation=2), torch.randn(1, 4, 8, 8))
    assert not _fast._dense_phases(nn.Conv3d(4, 6, 3, padding=1), x)
    with _fast.reference_mode():
        assert not _fast._dense_phases(conv, x)
    for train in (True, False):
        norm.train(train)
        got = _fast.conv_norm(conv, norm, x)
        with _fast.reference_mode():
            ref = norm(conv(x))
        assert torch.allclose(got, ref, atol=1e-10), train
        g1 = torch.autograd.grad(got.square().sum(), (x, conv.weight))
        with _fast.reference_mode():
            g2 = torch.autograd.grad(norm(conv(x)).square().sum(), (x, conv.weight))
        assert all(torch.allclose(a, b, atol=1e-8) for a, b in zip(g1, g2)), train


@pytest.mark.parametrize("transposed", [False, True])
def test_native_kernel_is_avoided_with_the_same_convolution(transposed):
    """A batch-1 3D convolution that PyTorch would run on its native CPU kernel (_fast._native_axes) runs with its
    spatial axes permuted: same output and gradients as the plain convolution (float32 against float64), anisotropic
    kernel, stride, padding and output padding included; off on the reference path, for batch 2 and for 1x1x1."""
    torch.manual_seed(0)
    if transposed:
        conv = _fast.FastConvTranspose3d(8, 6, (1, 2, 2), stride=(1, 2, 2))   # nnU-Net's: kernel = stride
    else:
        conv = _fast.FastConv3d(8, 6, (1, 3, 3), stride=(1, 2, 1), padding=(0, 1, 1), dilation=(1, 1, 2))
    x = torch.randn(1, 8, 3, 64, 48, requires_grad=True)   # N*C*D*H = 1536: native; in (H, W, D) order 24576
    assert _fast._native_axes(x, conv.kernel_size, 1) == (1, 2, 0)
    assert _fast._native_axes(torch.randn(2, 8, 3, 20, 40), conv.kernel_size, 1) is None
    assert _fast._native_axes(x, (1, 1, 1), 1) is None
    with _fast.reference_mode():
        assert _fast._native_axes(x, conv.kernel_size, 1) is None
    ref = copy.deepcopy(conv).double()
    with _fast.reference_mode():
        want = ref(x.double())
    got = conv(x)
    assert got.shape == want.shape and got.is_contiguous()
    _close(want.detach().float(), got.detach(), "output", tol=1e-5)
    g = torch.randn(want.shape, dtype=torch.float64)
    gw = torch.autograd.grad(want, (x, ref.weight, ref.bias), g)
    gg = torch.autograd.grad(got, (x, conv.weight, conv.bias), g.float())
    for a, b, what in zip(gw, gg, ("input", "weight", "bias")):
        _close(a.float(), b, f"grad of {what}", tol=1e-5)
    if transposed:   # output_size as ResDSN's decoder passes it
        assert conv(x, output_size=[3, 129, 97]).shape[2:] == (3, 129, 97)


@pytest.mark.parametrize("name", ["nnUNetTrainerMoNet", "nnUNetTrainerResDSNPaper"])
def test_batch_one_3d_fast_path_equals_reference(name):
    """Batch 1 (nnU-Net's sliding window), where the native-kernel rule applies at these widths: train and eval,
    outputs and gradients as close to float64 as the reference path's."""
    patch = (8, 48, 64)   # 8 features at full resolution: N*C*D*H = 3072, in (H, W, D) order 24576 > 20480
    net = _build(name, 3, patch)
    init = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(1, 1, *patch, generator=torch.Generator().manual_seed(6))
    assert _fast._native_axes(torch.randn(1, 8, *patch), (3, 3, 3), 1) == (1, 2, 0)
    n64 = copy.deepcopy(net).double()
    for train in (True, False):
        n64.load_state_dict(init)
        to, tg = _run(n64, x.double(), train, True, reference=True)
        net.load_state_dict(init)
        ro, rg = _run(net, x, train, True, reference=True)
        net.load_state_dict(init)
        fo, fg = _run(net, x, train, True, reference=False)
        assert _err(fo, to) <= 2 * _err(ro, to) + 1e-5
        keys = list(tg)
        assert _err([fg[k] for k in keys], [tg[k] for k in keys]) <= \
            2 * _err([rg[k] for k in keys], [tg[k] for k in keys]) + 1e-5
    assert any(isinstance(m, (_fast.FastConv3d, _fast.FastConvTranspose3d)) for m in net.modules())


@pytest.mark.parametrize("shape,k,d,bias", [((1, 3, 10, 11), (7, 7), (3, 3), True), ((2, 4, 9, 8), (3, 5), (1, 1), False),
                                            ((1, 2, 5, 7, 8), (5, 5, 5), (1, 1, 1), True),
                                            ((2, 4, 6, 9, 8), (3, 3, 5), (1, 1, 1), False),
                                            ((2, 3, 7, 9, 6), (1, 7, 7), (1, 3, 3), True),
                                            ((3, 2, 8, 7, 9), (3, 3, 3), (2, 2, 2), True)])
def test_depthwise_backward_is_the_convolutions_gradient(shape, k, d, bias):
    """The own backward of "same" depth-wise convolutions (_fast._DepthwiseSame: flipped-kernel convolution for the
    input gradient, batch-folded grouped convolution for the weight gradient) equals PyTorch's gradients (float64),
    and in float32 stays as close to the float64 gradients as PyTorch's own float32 backward (2x + 1e-6)."""
    c = shape[1]
    torch.manual_seed(0)
    conv = (_fast.DWConv2d if len(shape) == 4 else _fast.DWConv3d)(c, c, k, padding=[di * (ki // 2) for ki, di in zip(k, d)], dilation=d, groups=c, bias=bias)
    x = torch.randn(shape, requires_grad=True)
    with _fast.reference_mode(False):
        assert _fast._dw_same(conv, x)
        assert not _fast._dw_same(type(conv)(c, c, 3, padding=0, groups=c), x)                   # not "same"
        assert not _fast._dw_same(type(conv)(c, c, 3, padding=1, stride=2, groups=c), x)         # strided
    with _fast.reference_mode():
        assert not _fast._dw_same(conv, x)
    grads = {}
    for dtype in (torch.float64, torch.float32):
        conv_t, x_t = copy.deepcopy(conv).to(dtype), x.detach().to(dtype).requires_grad_()
        ins = [x_t, conv_t.weight] + ([conv_t.bias] if bias else [])
        g = torch.randn((shape[0], c, *shape[2:]), generator=torch.Generator().manual_seed(1)).to(dtype)
        for ref in (True, False):
            with _fast.reference_mode(ref):
                y = conv_t(x_t)
                grads[dtype, ref] = [y.detach()] + list(torch.autograd.grad(y, ins, g))
    for a, b in zip(grads[torch.float64, True], grads[torch.float64, False]):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    for i, truth in enumerate(grads[torch.float64, True]):
        scale = float(truth.abs().max())
        e_ref = float((grads[torch.float32, True][i].double() - truth).abs().max()) / scale
        e_fast = float((grads[torch.float32, False][i].double() - truth).abs().max()) / scale
        assert e_fast <= 2 * e_ref + 1e-6, f"output/grad {i}: {e_fast:.2e} vs PyTorch's {e_ref:.2e}"


def test_fast_paths_step_aside_for_hooks_autocast_and_unbatched_input():
    """A backward hook on a MoNet block (its output then is a view: no in-place ELU) trains as the reference path does;
    depth-wise convolutions under autocast and unbatched inputs take PyTorch's kernels (no own backward)."""
    net = _build("nnUNetTrainerMoNet", 2)
    init = {k: v.clone() for k, v in net.state_dict().items()}
    block = next(m for m in net.modules() if m.__class__.__name__ == "ConvBlock")
    block.norm.register_full_backward_hook(lambda m, gi, go: None)
    x = torch.randn(2, 1, *PATCH[2], generator=torch.Generator().manual_seed(7))
    ro, rg = _run(net, x, True, True, reference=True)
    net.load_state_dict(init)
    fo, fg = _run(net, x, True, True, reference=False)
    for a, b in zip(ro, fo):
        _close(a, b, "hooked MoNet output", tol=1e-4)
    dw = _fast.DWConv3d(4, 4, 3, padding=1, groups=4)
    with _fast.reference_mode(False):
        assert _fast._dw_same(dw, torch.randn(1, 4, 6, 6, 6))
        assert not _fast._dw_same(dw, torch.randn(4, 6, 6, 6))        # unbatched: PyTorch's own conv
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not _fast._dw_same(dw, torch.randn(1, 4, 6, 6, 6))
            y = dw(torch.randn(1, 4, 6, 6, 6, requires_grad=True))
            y.float().sum().backward()                                 # runs (PyTorch's backward)
        assert dw(torch.randn(4, 6, 6, 6)).shape == (4, 6, 6, 6)


def test_each_mechanism_has_its_own_device_switch(monkeypatch):
    """The layout, the phase decomposition and the own depth-wise backward each follow their own variable; unset,
    each follows the shorthand ENV_CL_DEVICES (default cpu); an empty value turns one off alone."""
    for env in (_fast.ENV_CL_DEVICES, _fast.ENV_LAYOUT_DEVICES, _fast.ENV_PHASES_DEVICES, _fast.ENV_DW_BACKWARD_DEVICES,
                _fast.ENV_REFERENCE):
        monkeypatch.delenv(env, raising=False)
    dw = _fast.DWConv3d(4, 4, 7, padding=9, dilation=3, groups=4)
    x = torch.randn(1, 4, 8, 8, 8)

    def on():
        with torch.no_grad():
            layout = _fast.channels_last_pays(dw, x)
        return layout, _fast._phases_apply(dw, x), _fast._dw_same(dw, x)

    assert on() == (True, True, True)
    for env, k in ((_fast.ENV_LAYOUT_DEVICES, 0), (_fast.ENV_PHASES_DEVICES, 1), (_fast.ENV_DW_BACKWARD_DEVICES, 2)):
        monkeypatch.setenv(env, "")
        assert on() == tuple(i != k for i in range(3)), env
        monkeypatch.setenv(_fast.ENV_CL_DEVICES, "cuda")          # the shorthand: the other two follow it
        assert on() == (False, False, False), env
        monkeypatch.setenv(env, "cuda,cpu")
        assert on() == tuple(i == k for i in range(3)), env
        monkeypatch.delenv(env)
        monkeypatch.delenv(_fast.ENV_CL_DEVICES)
    from nnunet_ext.architectures import _fast_act
    one = torch.randn(1, 2, 6, 6)
    assert _fast_act.channels_last_2d(one).is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setenv(_fast.ENV_LAYOUT_DEVICES, "")
    assert _fast_act.channels_last_2d(one) is one
