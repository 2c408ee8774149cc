#!/usr/bin/env python
"""Parameters, forward FLOPs and conv feature-map elements of DLKUNet-S/M/L and the DMC-Net family on one set of
nnU-Net plans, next to stock nnU-Net's PlainConvUNet on the same plans (issue 11, Builds 3-4).

Default plans: pancreas-like ``3d_fullres`` (patch 40x224x224, six stages, features 32 -> 320, strides
``[[1,1,1],[1,2,2],[2,2,2],[2,2,2],[2,2,2],[1,2,2]]``, kernels ``[[1,3,3],[1,3,3],[3,3,3],...]``, InstanceNorm,
LeakyReLU), one input channel, 2 classes (background, pancreas). Every network is built by its trainer's own
``build_network_architecture`` (what ``nnUNetv2_train`` builds) on the meta device, deep supervision off (the
deployed network), batch 1; FLOPs by :func:`nnunet_ext.architectures.forward_flops` (``FlopCounterMode``: 2 FLOPs per
multiply-add; pooling, norms, activations, element-wise products not counted); feature-map elements by the
network's ``compute_conv_feature_map_size`` (what nnU-Net's planner uses as its activation-memory proxy).
Machine-independent: no timing.

    python benchmarks/plans_model_figures.py                   # the table kept in docs/dlkunet.md, docs/dmc_net.md
    python benchmarks/plans_model_figures.py --alternatives    # + the DLKUNet rules that were not chosen
"""
from __future__ import annotations

import argparse
from types import SimpleNamespace

import torch

PANCREAS_3D = dict(
    patch=(40, 224, 224),
    arch_kwargs=dict(n_stages=6, features_per_stage=[32, 64, 128, 256, 320, 320], conv_op="torch.nn.Conv3d",
                     kernel_sizes=[[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
                     strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]],
                     n_conv_per_stage=[2] * 6, n_conv_per_stage_decoder=[2] * 5, conv_bias=True,
                     norm_op="torch.nn.InstanceNorm3d", norm_op_kwargs={"eps": 1e-5, "affine": True},
                     dropout_op=None, dropout_op_kwargs=None, nonlin="torch.nn.LeakyReLU",
                     nonlin_kwargs={"inplace": True}))

TRAINERS = ["nnUNetTrainerDLKUNetS", "nnUNetTrainerDLKUNetM", "nnUNetTrainerDLKUNetL",
            "nnUNetTrainerDMCNet", "nnUNetTrainerDMCNetPlansKernels",
            "nnUNetTrainerDMSCNet", "nnUNetTrainerDMSCNetPlansKernels",
            "nnUNetTrainerDMRCNet", "nnUNetTrainerDMRCNetPlansKernels",
            "nnUNetTrainerDMCUNet", "nnUNetTrainerDMCUNetPlansKernels"]


def figures(build, patch):
    from nnunet_ext.architectures import forward_flops

    with torch.device("meta"):
        net = build()
    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    flops = forward_flops(net, (1, 1, *patch), "meta")
    return params, flops, int(net.compute_conv_feature_map_size(patch))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alternatives", action="store_true",
                    help="also the DLKUNet rules not chosen: the paper's C=96 with Table 1's caps; the paper's "
                         "depth (3/4/5 stages) at the plans' widths")
    args = ap.parse_args(argv)

    from nnunet_ext import architectures as A
    from nnunet_ext import trainers as T

    patch, kw = PANCREAS_3D["patch"], PANCREAS_3D["arch_kwargs"]
    cm = SimpleNamespace(patch_size=list(patch), network_arch_init_kwargs=kw)
    rows = [("stock nnU-Net (PlainConvUNet)", lambda: A.create_from_plans("plain_unet", kw, 1, 2, False))]
    for name in TRAINERS:
        rows.append((name, lambda c=getattr(T, name): c.build_network_architecture(None, cm, 1, 2, False)))
    if args.alternatives:
        from nnunet_ext.architectures.dlkunet import TABLE1
        from nnunet_ext.trainers.base import trim_arch_kwargs
        for v, (n, cap) in TABLE1.items():
            rows.append((f"(not chosen) dlkunet_{v}: paper rule C=96, widest {cap}",
                         lambda cap=cap: A.create_from_plans("dlkunet_l_nnunetwidth", kw, 1, 2, False, base_features=96,
                                                             max_features=cap)))
        for v, (n, _) in TABLE1.items():
            rows.append((f"(not chosen) dlkunet_{v}: paper depth {n} stages, plans' widths",
                         lambda n=n: A.create_from_plans("dlkunet_l_nnunetwidth", trim_arch_kwargs(kw, n), 1, 2, False)))
    print(f"plans: 3d_fullres patch {'x'.join(map(str, patch))}, {kw['n_stages']} stages, features "
          f"{kw['features_per_stage']}, 1 channel, 2 classes; meta device, batch 1, deep supervision off")
    print("| network | params (M) | x stock | forward GFLOPs | x stock | feature-map elements (1e9) | x stock |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    ref = None
    for label, build in rows:
        p, f, a = figures(build, patch)
        ref = ref or (p, f, a)
        print(f"| {label} | {p / 1e6:.2f} | {p / ref[0]:.2f} | {f / 1e9:.1f} | {f / ref[1]:.2f} | {a / 1e9:.2f} | "
              f"{a / ref[2]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
