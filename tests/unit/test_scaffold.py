"""The U-Net scaffold (architectures/_scaffold.py) and the families built on it.

Checkpoint compatibility and behaviour against the code before the scaffold (commit cbe8e66): the digests of the
state_dict keys/shapes and output statistics in tests/data/scaffold_golden.json were written by
``benchmarks/scaffold_equivalence.py golden`` from a record saved on that commit (the script's ``compare`` does the
full check: every entry, three geometries, old state_dict loaded into the new model, train and eval mode; its code is
nnunet_ext/benchmark/scaffold_equivalence.py).
"""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from nnunet_ext import architectures as A
from nnunet_ext.architectures._scaffold import ScaffoldUNet, UNetDecoder, UNetEncoder, max_pool
from nnunet_ext.benchmark import scaffold_equivalence as EQ

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((ROOT / "tests" / "data" / "scaffold_golden.json").read_text())
GEO = {g[0]: g for g in EQ.GEOMETRIES}
SCAFFOLD_NAMES = [n for n in A.list_architectures() if issubclass(A.get_spec(n).cls, ScaffoldUNet)]


def test_every_u_net_family_is_on_the_scaffold():
    families = {A.get_spec(n).family for n in SCAFFOLD_NAMES}
    assert families == {"dmc_net", "resdsn", "dlkunet", "monet"}


@pytest.mark.parametrize("name", SCAFFOLD_NAMES)
def test_keys_and_outputs_as_before_the_scaffold(name):
    """Same state_dict keys/shapes (old checkpoints load) and the same outputs from the same seed (2D plans)."""
    net, x = EQ.tiny(name, GEO["2d"])
    assert EQ.keys_digest([(k, v.shape) for k, v in net.state_dict().items()]) == GOLDEN[name]["tiny"]["2d"]["keys"]
    net.eval()
    with torch.no_grad():
        got = EQ.output_stats(EQ.outputs(net(x)))
    want = GOLDEN[name]["tiny"]["2d"]["eval"]
    assert [g[0] for g in got] == [w[0] for w in want]
    for g, w in zip(got, want):
        assert g[1:] == pytest.approx(w[1:], rel=1e-4, abs=1e-5)


# one network per family (DMC-Net: both DMSC designs and DMRC; ResDSN: the short-residual projection)
@pytest.mark.parametrize("name", ["dmcnet_2d", "dmcnet_3d", "dlkunet_s", "monet", "resdsn_full"])
def test_feature_map_sizes_are_int_under_one_name(name):
    """Every sub-block reports its feature maps as compute_conv_feature_map_size, a Python int."""
    net, x = EQ.tiny(name, GEO["3d_aniso"])
    ours = [m for m in net.modules() if m is not net and type(m).__module__.startswith("nnunet_ext")
            and not isinstance(m, (UNetEncoder, UNetDecoder))]
    assert not [type(m).__name__ for m in ours if hasattr(m, "conv_feature_map_size")]
    inputs = {}

    def record(m, i, o):   # returns None: the output is left alone
        inputs.setdefault(m, [list(t.shape[2:]) for t in i])

    hooks = [m.register_forward_hook(record) for m in ours if hasattr(m, "compute_conv_feature_map_size")]
    with torch.no_grad():
        net.eval()(x[:1])
    for h in hooks:
        h.remove()
    assert len(inputs) > 3
    for m, shapes in inputs.items():
        args = [shapes[1], shapes[0]] if len(shapes) == 2 else shapes   # a decoder block (below, skip)
        v = m.compute_conv_feature_map_size(*args)
        assert type(v) is int, f"{type(m).__name__}.compute_conv_feature_map_size returned {type(v).__name__}"
    assert type(net.compute_conv_feature_map_size(GEO["3d_aniso"][1])) is int


@pytest.mark.slow
@pytest.mark.parametrize("name", A.list_architectures())
def test_paper_configuration_keys_as_before(name):
    spec = A.get_spec(name)
    with torch.device("meta"):
        net = spec.cls(**spec.default_kwargs())
    assert EQ.keys_digest([(k, v.shape) for k, v in net.state_dict().items()]) == GOLDEN[name]["paper_keys"]


# ----------------------------------------------------------------------------------------------- the scaffold itself
def _toy(fuse="cat", heads_by_resolution=False, head_taps="decoder", layout="separate", ds=True):
    conv, feats, strides = nn.Conv2d, [4, 6, 8], [[1, 1], [2, 2], [2, 2]]
    enc = UNetEncoder(2, feats, strides, conv_op=conv, layout=layout,
                      make_down=lambda s, cin, st: max_pool(conv, st),
                      make_block=lambda s, cin, c: conv(cin, c, 3, padding=1))
    cin = {"cat": 2, "cat_skip_first": 2, "sum": 1, "none": 1}[fuse]
    dec = UNetDecoder(enc, 3, ds, fuse=fuse, heads_by_resolution=heads_by_resolution, head_taps=head_taps,
                      make_up=lambda s: nn.ConvTranspose2d(feats[s + 1], feats[s], 2, 2),
                      make_stage=lambda s: conv(cin * feats[s], feats[s], 3, padding=1),
                      make_head=lambda s: conv(feats[s], 3, 1))
    return enc, dec


@pytest.mark.parametrize("fuse", ["cat", "cat_skip_first", "sum", "none"])
def test_decoder_outputs_highest_resolution_first_and_ds_switch(fuse):
    torch.manual_seed(0)
    enc, dec = _toy(fuse)
    x = torch.randn(1, 2, 16, 12)
    skips = enc(x)
    assert [tuple(s.shape[1:]) for s in skips] == [(4, 16, 12), (6, 8, 6), (8, 4, 3)]
    outs = dec(skips)
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 12), (8, 6)]
    dec.deep_supervision = False
    assert torch.equal(dec(skips), outs[0])
    # the lowest decoder step by hand: upsample, fuse, block, head
    up = dec.transpconvs[0](skips[2])
    fused = {"cat": torch.cat((up, skips[1]), 1), "cat_skip_first": torch.cat((skips[1], up), 1),
             "sum": up + skips[1], "none": up}[fuse]
    assert torch.allclose(outs[1], dec.seg_layers[0](dec.stages[0](fused)))


def test_heads_by_resolution_and_encoder_taps():
    torch.manual_seed(0)
    enc, dec = _toy(heads_by_resolution=True, head_taps="encoder")
    skips = enc(torch.randn(1, 2, 16, 12))
    outs = dec(skips)
    assert dec.seg_layers[0].in_channels == 4 and dec.seg_layers[1].in_channels == 6   # index = resolution
    assert torch.allclose(outs[1], dec.seg_layers[1](skips[1]))


def test_encoder_layouts_and_feature_map_size():
    enc_sep, _ = _toy(layout="separate")
    enc_seq, _ = _toy(layout="sequential")
    assert {k.split(".")[0] for k in enc_sep.state_dict()} == {"stages"}
    assert isinstance(enc_sep.pools[0], nn.Identity) and isinstance(enc_sep.pools[1], nn.MaxPool2d)
    assert isinstance(enc_seq.stages[1][0], nn.MaxPool2d) and isinstance(enc_seq.stages[1][1], nn.Conv2d)
    enc_seq.load_state_dict({k.replace("stages.0.", "stages.0.1.").replace("stages.1.", "stages.1.1.")
                             .replace("stages.2.", "stages.2.1."): v for k, v in enc_sep.state_dict().items()})
    x = torch.randn(1, 2, 16, 12)
    assert all(torch.equal(a, b) for a, b in zip(enc_sep(x), enc_seq(x)))
    # the conv blocks here have no compute_conv_feature_map_size: they count 0; stage sizes floor
    assert enc_sep.stage_sizes((17, 13)) == [[17, 13], [8, 6], [4, 3]]
    assert enc_sep.compute_conv_feature_map_size((16, 12)) == 0
