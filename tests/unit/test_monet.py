"""MoNet (Knolle, Kaissis et al. 2021): paper parameter count, RDDC wiring, sampling geometry, the plateau schedule (the
trainers on real plans, a tiny end-to-end nnU-Net run and the CPU speed benchmark's smoke run:
tests/integration/test_monet.py)."""

import numpy as np
import pytest
import torch
from torch import nn

from nnunet_ext import architectures as A
from nnunet_ext.architectures.monet import ELU, MoNet, RDDCBlock, paper_parameter_counts
from nnunet_ext.trainers.base import trim_arch_kwargs, trim_plans
from nnunet_ext.trainers.monet import ValLossPlateau

def _expected_paper_counts(widths=(16, 32, 64), c_in=1, k=3, kd=4):
    """Counts of the paper's network derived from its description (Keras: BN has γ, β, moving mean, var)."""
    f0, f1, f2 = widths
    convs = bn = 0
    prev = c_in
    for s, f in enumerate(widths):                      # encoder: [down conv], B, 4 RDDC convs
        if s:
            convs += prev * prev * kd * kd; bn += prev
        convs += prev * f * k * k + 4 * f * f * k * k; bn += 5 * f
        prev = f
    for lo, hi in ((f1, f2), (f0, f1)):                 # decoder: transposed conv, B on [skip, up], RDDC
        convs += hi * hi * kd * kd; bn += hi
        convs += (lo + hi) * lo * k * k + 4 * lo * lo * k * k; bn += 5 * lo
    convs += f0 * 1; bn += 1                            # 1x1 head (no bias) + BN
    return convs + 2 * bn, 2 * bn


def test_paper_parameter_count_is_403556(meta_model):
    net = meta_model("monet")
    counts = paper_parameter_counts(net)
    trainable, running = _expected_paper_counts()
    assert counts["trainable"] == trainable == 401_666
    assert counts["bn_running_stats"] == running == 1_890
    assert counts["total"] == 403_556  # the paper's count (Keras counts BN moving mean/var)
    # num_batches_tracked is not counted
    assert counts["total"] < sum(v.numel() for v in net.state_dict().values())


def test_paper_configuration_geometry():
    net = A.create("monet").eval()
    assert isinstance(net.encoder.stages[0][0].conv, nn.Conv2d)
    bottleneck = []
    net.encoder.stages[-1].register_forward_hook(lambda m, i, o: bottleneck.append(o.shape))
    with torch.no_grad():
        y = net(torch.randn(2, 1, 256, 256))
    assert y.shape == (2, 1, 256, 256)                  # one merged foreground (sigmoid applied outside)
    assert bottleneck[0] == (2, 64, 64, 64)              # two stride-2 downsamplings: 256 -> 64
    downs = [m.stages[s][0].conv for m in [net.encoder] for s in (1, 2)]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in downs)
    ups = [u[0] for u in net.decoder.ups]
    assert all(isinstance(u, nn.ConvTranspose2d) and u.kernel_size == (4, 4) for u in ups)
    rddc = net.encoder.stages[0][1]
    assert [c.conv.dilation for c in rddc.convs] == [(4, 4), (3, 3), (2, 2), (1, 1)]
    assert all(type(d) is nn.Dropout2d and d.p == 0.2 for d in rddc.drops)
    with pytest.raises(ValueError):
        A.create("monet", deep_supervision=True)        # the paper's net has no deep-supervision heads


def test_rddc_wiring_matches_the_authors_code():
    """c1 = B(x; 4), c2 = B(x + c1; 3), c3 = B(c2; 2), out = B(c2 + c3; 1) (dropout off in eval)."""
    torch.manual_seed(0)
    blk = RDDCBlock(nn.Conv2d, 8).eval()
    seen_in, seen_out = [], []
    def hook(m, i, o):
        seen_in.append(i[0].clone())
        seen_out.append(o.clone())

    for c in blk.convs:
        c.register_forward_hook(hook)
    x = torch.randn(1, 8, 20, 18)
    with torch.no_grad():
        out = blk(x)
    c1, c2, c3, c4 = seen_out
    assert torch.equal(seen_in[0], x)
    assert torch.allclose(seen_in[1], x + c1)
    assert torch.equal(seen_in[2], c2)
    assert torch.allclose(seen_in[3], c2 + c3)
    assert torch.equal(out, c4) and out.shape == x.shape


def test_fast_elu_equals_elu():
    x = torch.linspace(-20, 20, 100_001)
    with torch.no_grad():
        assert torch.allclose(ELU()(x), nn.functional.elu(x), atol=1e-6, rtol=0)
    xg = x.clone().requires_grad_()
    ELU()(xg).sum().backward()
    assert torch.allclose(xg.grad, torch.where(x > 0, torch.ones_like(x), torch.exp(x)), atol=1e-6)


@pytest.mark.parametrize("patch,strides,kernels", [
    ((12, 40, 24), [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2]], [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]]),
    ((7, 16, 8), [[1, 1, 1], [1, 2, 2], [1, 2, 1]], [[3, 3, 3]] * 3),
])
def test_sampling_sizes_for_anisotropic_plans(patch, strides, kernels):
    """4-kernel/pad-1 on stride-2 axes, the stage's odd kernel on stride-1 axes: exactly nnU-Net's sizes."""
    n = len(strides)
    net = MoNet(1, n, [4 * 2 ** i for i in range(n)], nn.Conv3d, kernels, strides, 2, deep_supervision=True).eval()
    for s in range(1, n):
        conv = net.encoder.stages[s][0].conv
        assert conv.kernel_size == tuple(4 if st == 2 else k for st, k in zip(strides[s], kernels[s]))
    with torch.no_grad():
        outs = net(torch.randn(1, 1, *patch))
    scale = np.cumprod(np.array(strides), 0)
    assert [tuple(o.shape[2:]) for o in outs] == [tuple(np.array(patch) // sc) for sc in scale[:-1]]


def test_value_errors_name_stage_axis_size():
    net = MoNet(1, 3, [4, 8, 16], nn.Conv2d, 3, [[1, 1], [2, 2], [2, 2]], 2).eval()
    with pytest.raises(ValueError, match=r"stage 2, axis 1: size 5"):
        net(torch.randn(1, 1, 20, 10))
    with pytest.raises(ValueError, match=r"stage 1, axis 0: stride 3"):
        MoNet(1, 2, [4, 8], nn.Conv2d, 3, [[1, 1], [3, 2]], 2)
    with pytest.raises(ValueError, match=r"stage 0"):
        MoNet(1, 2, [4, 8], nn.Conv2d, 3, [[2, 2], [2, 2]], 2)


def test_trim_to_paper_depth():
    ak = dict(n_stages=5, features_per_stage=[32, 64, 128, 256, 512], kernel_sizes=[[3, 3]] * 5,
              strides=[[1, 1]] + [[2, 2]] * 4, n_conv_per_stage=[2] * 5, n_conv_per_stage_decoder=[2] * 4)
    t = trim_arch_kwargs(ak, 3)
    assert t["n_stages"] == 3 and t["strides"] == [[1, 1], [2, 2], [2, 2]] and len(t["n_conv_per_stage_decoder"]) == 2
    assert ak["n_stages"] == 5  # a copy
    assert trim_arch_kwargs(t, 3) == t and trim_arch_kwargs(ak, None) == ak
    plans = {"configurations": {"a": {"architecture": {"arch_kwargs": ak}}, "b": {"inherits_from": "a"}}}
    assert trim_plans(plans, "b", 3)["configurations"]["a"]["architecture"]["arch_kwargs"]["n_stages"] == 3


def test_val_loss_plateau_reduces_after_two_stagnant_epochs():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.NAdam([p], lr=5e-4)
    sched = ValLossPlateau(opt)
    sched.step(7)  # nnU-Net's per-epoch call with the epoch number: ignored
    lrs = []
    for loss in (1.0, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8):
        sched.step_val_loss(loss)
        lrs.append(opt.param_groups[0]["lr"])
    # stagnation at epochs 3 and 4 (2 epochs) -> x0.1; improvement at 5; stagnation 6, 7 -> x0.1
    assert np.allclose(lrs, [5e-4, 5e-4, 5e-4, 5e-5, 5e-5, 5e-5, 5e-6])
