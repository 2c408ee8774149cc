"""Before/after check of a refactoring of the architectures: :func:`record` (on the old code) keeps, for every registry
entry, the paper configuration's state_dict keys/shapes, parameters and feature-map size, and on tiny nnU-Net-like
plans (:data:`GEOMETRIES`) the state_dict and the outputs in eval and train mode; :func:`compare` (on the new code)
checks them, the old state_dict loaded into the new model; :func:`golden` reduces a record to the digests and output
statistics tests/unit/test_scaffold.py compares against. The command is ``benchmarks/scaffold_equivalence.py``."""

import torch

from nnunet_ext import architectures as A

GEOMETRIES = [
    ("2d", (48, 40), [[1, 1], [2, 2], [2, 2], [2, 2]], [8, 16, 32, 32]),
    ("3d_aniso", (20, 48, 40), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], [8, 16, 32, 32]),
    ("3d_odd_unpooled", (7, 32, 24), [[1, 1, 1], [1, 2, 2], [1, 2, 2]], [8, 16, 24]),
]
SMALL = {2: (64, 64), 3: (16, 64, 64)}


def tiny_arch_kwargs(dim, strides, features):
    """nnU-Net-like PlainConvUNet kwargs for the tiny plans of a geometry."""
    n = len(strides)
    return dict(n_stages=n, features_per_stage=features, conv_op=f"torch.nn.Conv{dim}d",
                kernel_sizes=[[3] * dim] * n, strides=strides, n_conv_per_stage=[2] * n,
                n_conv_per_stage_decoder=[2] * (n - 1), conv_bias=True, norm_op=f"torch.nn.InstanceNorm{dim}d",
                norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None, dropout_op_kwargs=None,
                nonlin="torch.nn.LeakyReLU", nonlin_kwargs={"inplace": True})


def outputs(y):
    """A network's output(s) as a list of detached copies."""
    return [t.detach().clone() for t in (y if isinstance(y, (list, tuple)) else [y])]


def tiny(name, geo):
    """Registry entry ``name`` on the tiny plans of ``geo`` (seed 0) and its input (seed 1)."""
    _, patch, strides, features = geo
    spec = A.get_spec(name)
    torch.manual_seed(0)
    net = A.create_from_plans(name, tiny_arch_kwargs(len(patch), strides, features), 2, 3, True, **spec.test_kwargs)
    torch.manual_seed(1)
    x = torch.randn(2, 2, *patch)
    return net, x


def run_modes(net, x):
    """Outputs in eval mode, then in train mode (seed 2)."""
    net.eval()
    with torch.no_grad():
        ev = outputs(net(x))
    net.train()
    torch.manual_seed(2)
    with torch.no_grad():
        tr = outputs(net(x))
    return ev, tr


def record(pattern=None):
    """What :func:`compare` checks, for every registry entry matching ``pattern``."""
    rec = {}
    for name in A.list_architectures(pattern):
        spec = A.get_spec(name)
        kw = spec.default_kwargs()
        with torch.device("meta"):
            net = spec.cls(**kw)
        dim = 3 if "3d" in kw["conv_op"].__name__.lower() else 2
        r = {"keys": [(k, tuple(v.shape)) for k, v in net.state_dict().items()],
             "params": A.count_parameters(net), "fmap": int(net.compute_conv_feature_map_size(SMALL[dim])),
             "fmap_type": type(net.compute_conv_feature_map_size(SMALL[dim])).__name__, "tiny": {}}
        for geo in GEOMETRIES:
            tnet, x = tiny(name, geo)
            sd = {k: v.clone() for k, v in tnet.state_dict().items()}  # before the train-mode pass moves BN stats
            ev, tr = run_modes(tnet, x)
            r["tiny"][geo[0]] = {"sd": sd, "eval": ev, "train": tr,
                                 "fmap": int(tnet.compute_conv_feature_map_size(geo[1]))}
        rec[name] = r
        print(name, r["params"], flush=True)
    return rec


def compare(old, pattern=None):
    """Check the current code against a :func:`record` of the old one; 1 if an entry differs."""
    new = record(pattern)
    old = {k: v for k, v in old.items() if k in A.list_architectures(pattern)}
    bad = 0
    for name, o in old.items():
        n = new.get(name)
        if n is None:
            print(f"MISSING {name}")
            bad += 1
            continue
        msgs = []
        if o["keys"] != n["keys"]:
            msgs.append("state_dict keys/shapes differ")
        if o["params"] != n["params"]:
            msgs.append(f"params {o['params']} -> {n['params']}")
        if o["fmap"] != n["fmap"]:
            msgs.append(f"fmap {o['fmap']} -> {n['fmap']}")
        if n["fmap_type"] != "int" and A.get_spec(name).cls.__module__.startswith("nnunet_ext"):  # ours: int
            msgs.append(f"fmap type {n['fmap_type']}")
        same_seed = True
        for g, ot in o["tiny"].items():
            nt = n["tiny"][g]
            if ot["fmap"] != nt["fmap"]:
                msgs.append(f"{g}: fmap {ot['fmap']} -> {nt['fmap']}")
            geo = next(G for G in GEOMETRIES if G[0] == g)
            net, x = tiny(name, geo)
            net.load_state_dict(ot["sd"], strict=True)
            ev, tr = run_modes(net, x)
            for tag, a, b in (("eval", ot["eval"], ev), ("train", ot["train"], tr)):
                if len(a) != len(b) or any(p.shape != q.shape or not torch.allclose(p, q, rtol=1e-5, atol=1e-5)
                                           for p, q in zip(a, b)):
                    msgs.append(f"{g}: {tag} outputs differ after loading the old state_dict")
            same_seed &= all(torch.equal(p, q) for p, q in zip(ot["eval"], nt["eval"]))
        print(f"{'OK ' if not msgs else 'BAD'} {name}: params {n['params']}, same seed -> same outputs: {same_seed}"
              + ("" if not msgs else "; " + "; ".join(msgs)))
        bad += bool(msgs)
    print(f"{len(old)} entries compared, {bad} differ")
    return 1 if bad else 0


def keys_digest(items) -> str:
    """sha256 of a state_dict's ``key shape`` lines (order included): equal digests, loadable checkpoints."""
    import hashlib
    return hashlib.sha256("\n".join(f"{k} {tuple(s)}" for k, s in items).encode()).hexdigest()


def output_stats(outs) -> list:
    """Per output: shape, mean, mean |x|, std (a fingerprint that survives fp32 noise, not a wiring change)."""
    return [[list(o.shape), float(o.mean()), float(o.abs().mean()), float(o.std())] for o in outs]


def golden(rec: dict) -> dict:
    """What tests/unit/test_scaffold.py checks, from a record saved on the code before the scaffold."""
    out = {}
    for name, r in rec.items():
        out[name] = {"paper_keys": keys_digest(r["keys"]),
                     "tiny": {g: {"keys": keys_digest([(k, v.shape) for k, v in t["sd"].items()]),
                                  "eval": output_stats(t["eval"])} for g, t in r["tiny"].items()}}
    return out
