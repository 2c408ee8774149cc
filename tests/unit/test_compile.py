"""Every registered network, 2D and 3D, traces to ONE graph with no graph break under ``torch._dynamo.explain`` on
the CPU, on the fast path (``architectures/_fast.py``: every CPU mechanism on, its default there) and on the reference
path, in train mode with autograd and in eval mode without (the fast path's rules differ between the two). A new
architecture joins by registering. The default run takes one variant per family x dim in train mode; ``-m slow``
every variant in both modes."""
import pytest
import torch
import torch._dynamo

from nnunet_ext import architectures as A
from nnunet_ext.architectures import _fast

#: tiny nnU-Net-like plans: up to 5 stages (DLKUNet-L takes 5), anisotropic 3D strides, 4 features at full
#: resolution; a network is built on the fewest stages it accepts (3 or more: tracing time grows with the stages)
PATCH = {2: (32, 32), 3: (4, 32, 32)}
STRIDES = {2: [[1, 1], [2, 2], [2, 2], [2, 2], [2, 2]],
           3: [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [1, 2, 2]]}


def arch_kwargs(dim, n=5, **overrides):
    """Plans-style ``arch_kwargs`` of the first ``n`` stages of the tiny plans above (shared with test_hooks)."""
    return dict(dict(n_stages=n, features_per_stage=[4, 8, 16, 16, 16][:n], conv_op=f"torch.nn.Conv{dim}d",
                     kernel_sizes=[[3] * dim] * n, strides=STRIDES[dim][:n], n_conv_per_stage=[2] * n,
                     n_conv_per_stage_decoder=[2] * (n - 1), conv_bias=True, norm_op=f"torch.nn.InstanceNorm{dim}d",
                     norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None, dropout_op_kwargs=None,
                     nonlin="torch.nn.LeakyReLU", nonlin_kwargs={"inplace": True}), **overrides)


def build(name, dim, **overrides):
    """The registered network ``name`` on the fewest stages (3 to 5) of the tiny plans it accepts (1 input channel,
    2 classes, deep supervision)."""
    spec = A.get_spec(name)
    for n in (3, 4, 5):
        torch.manual_seed(0)
        try:
            return A.create_from_plans(name, arch_kwargs(dim, n, **overrides), 1, 2, True, **spec.test_kwargs)
        except Exception:   # too few stages for this network (e.g. DLKUNet-M/L by the paper's depth rule)
            if n == 5:
                raise


def _fits(name, dim):
    """A name with a dimension suffix (``dmcnet_2d``) stands for its own dimension."""
    other = 3 if dim == 2 else 2
    return not name.endswith(f"_{other}d")


def default_names(dim):
    """One variant per family for ``dim``: the first registered one whose name fits the dimension."""
    first = {}
    for name in A.list_architectures():
        if _fits(name, dim):
            first.setdefault(A.get_spec(name).family, name)
    return list(first.values())


def _cases():
    for dim in (2, 3):
        default = set(default_names(dim))
        for name in A.list_architectures():
            for fast in (True, False):
                for train in (True, False):
                    marks = () if name in default and train else (pytest.mark.slow,)
                    yield pytest.param(name, dim, fast, train, marks=marks, id=f"{name}-{dim}d-"
                                       f"{'fast' if fast else 'reference'}-{'train' if train else 'eval'}")


@pytest.mark.parametrize("name,dim,fast,train", list(_cases()))
def test_one_graph_no_break(name, dim, fast, train):
    """Train mode with autograd (default run) and eval mode without (``-m slow``: BatchNorm folding, the inference
    rules of the layout)."""
    net = build(name, dim).train(train)
    x = torch.randn(1, 1, *PATCH[dim])
    torch._dynamo.reset()
    try:
        with _fast.reference_mode(not fast), torch.set_grad_enabled(train):
            ex = torch._dynamo.explain(net)(x)
    finally:
        torch._dynamo.reset()
    reasons = [str(b.reason).splitlines()[0] for b in ex.break_reasons]
    assert (ex.graph_count, ex.graph_break_count) == (1, 0), f"{ex.graph_count} graphs, breaks: {reasons[:3]}"
