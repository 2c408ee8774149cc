"""Hooks see what PyTorch promises, in every registered network (2D and 3D, tiny plans of test_compile): a full
backward hook on every norm module does not make forward+backward raise (an in-place activation on a hooked output
would), and a forward hook on every norm module sees the norm's output as it left the norm (an in-place activation
after a watched norm would change it). The fast paths step aside for a watched module (``_fast_mode.hooked``). The
plans' own nonlinearity is built out of place here: ``nonlin_kwargs={"inplace": True}``, nnU-Net's default, makes
every network (nnU-Net's own PlainConvUNet too) fail both checks; what is checked is what the networks decide."""
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from nnunet_ext import architectures as A
from tests.unit.test_compile import PATCH, build

#: the plans' nonlinearity out of place (see above)
PLANS = dict(nonlin_kwargs={"inplace": False})
NORMS = (_NormBase, nn.GroupNorm, nn.LayerNorm)
CASES = [pytest.param(name, dim, id=f"{name}-{dim}d") for name in A.list_architectures() for dim in (2, 3)]


def _norms(net):
    return [m for m in net.modules() if isinstance(m, NORMS)]


def _outs(o):
    return list(o) if isinstance(o, (list, tuple)) else [o]


@pytest.mark.parametrize("name,dim", CASES)
def test_full_backward_hooks_on_norms(name, dim):
    net = build(name, dim, **PLANS).train()
    norms = _norms(net)
    assert norms, "no norm module"
    fired = []
    for m in norms:
        m.register_full_backward_hook(lambda mod, gi, go: fired.append(mod))
    x = torch.randn(2, 1, *PATCH[dim])
    sum(o.float().mean() for o in _outs(net(x))).backward()
    assert fired


@pytest.mark.parametrize("name,dim", CASES)
def test_forward_hooks_on_norms_see_the_unmutated_output(name, dim):
    net = build(name, dim, **PLANS)
    seen = []
    for m in _norms(net):
        m.register_forward_hook(lambda mod, i, o: seen.append((type(mod).__name__, o, o.detach().clone())))
    x = torch.randn(2, 1, *PATCH[dim])
    for train in (True, False):
        net.train(train)
        seen.clear()
        with torch.set_grad_enabled(train):
            net(x)
        assert seen
        changed = [k for k, (what, o, c) in enumerate(seen) if not torch.equal(o.detach(), c)]
        mode = "train" if train else "eval"
        assert not changed, f"{mode}: {len(changed)} of {len(seen)} norm outputs changed after the hook, " \
                            f"first: call {changed[0]} ({seen[changed[0]][0]})"
