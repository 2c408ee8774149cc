"""Parameters and FLOPs of the DMC-Net family's paper configurations (Yang, Marcus, Sotiras, BSPC 2025, Table 4),
next to the paper's reported figures; ``python -m nnunet_ext.benchmark.dmc_flops flops`` prints the table of
docs/dmc_net.md ("FLOPs of the paper configurations").

FLOPs are counted by nnunet-ext's one FLOP counter (:func:`nnunet_ext.architectures.forward_flops`: torch's
FlopCounterMode; convolutions, transposed convolutions, matmuls; 1 multiply-add = 2 FLOPs; pooling, sigmoid and
element-wise ops are not counted), on the meta device.
"""
from __future__ import annotations

import argparse
import sys
from typing import Dict, List, Optional, Sequence

import torch
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim

from nnunet_ext.architectures import count_parameters_of, forward_flops, get_spec, list_architectures
from nnunet_ext.architectures.dmc_net import TABLE4

__all__ = ["FLOPS_INPUT", "TABLE4_GFLOPS", "count_flops", "flops_table", "main"]

#: input sizes (spatial) at which flops_table counts: the paper's 2D patch (512 x 512, Sec. 3.2) and a 3D patch
#: of 96 x 192 x 192 voxels (D x H x W)
FLOPS_INPUT = {2: (512, 512), 3: (96, 192, 192)}

#: Table 4's FLOPs (G) as reported, for the comparison in docs/dmc_net.md
TABLE4_GFLOPS: Dict[str, float] = {
    "dmc_unet_2d": 94.86, "dmc_dmrcnet_pool2_2d": 145.47, "dmc_dmrcnet_2d": 138.86, "dmc_dmscnet_5x5_2d": 343.13,
    "dmc_dmscnet_5x5dw_2d": 147.80, "dmc_dmscnet_7x7_2d": 536.81, "dmc_dmscnet_7x7dw_2d": 150.15,
    "dmc_unet_3d": 1398.81, "dmc_dmrcnet_pool2_3d": 2098.93, "dmc_dmrcnet_3d": 2011.70, "dmc_dmscnet_5x5_3d": 6766.37,
    "dmc_dmscnet_5x5dw_3d": 2140.72, "dmc_dmscnet_7x7_3d": 15061.43, "dmc_dmscnet_7x7dw_3d": 2337.84,
}


def count_flops(name: str, spatial: Optional[Sequence[int]] = None, batch: int = 1) -> int:
    """FLOPs of one forward pass of variant ``name`` (paper configuration, built on the meta device) at ``spatial``
    (default :data:`FLOPS_INPUT`)."""
    spec = get_spec(name)
    kwargs = spec.default_kwargs()
    spatial = tuple(spatial or FLOPS_INPUT[convert_conv_op_to_dim(kwargs["conv_op"])])
    with torch.device("meta"):
        net = spec.cls(**kwargs).eval()
    return forward_flops(net, (batch, kwargs["input_channels"], *spatial), "meta")


def flops_table(names: Optional[Sequence[str]] = None) -> List[dict]:
    """Rows (name, input, params_M, paper_params_M, GFLOPs, GMACs, paper_GFLOPs) for the paper configurations at
    :data:`FLOPS_INPUT`, batch 1."""
    rows = []
    for name in names or list_architectures("dmc*"):
        dim = convert_conv_op_to_dim(get_spec(name).default_kwargs()["conv_op"])
        flops = count_flops(name)
        rows.append(dict(name=name, input=FLOPS_INPUT[dim], params_M=count_parameters_of(name) / 1e6,
                         paper_params_M=TABLE4.get(name), GFLOPs=flops / 1e9, GMACs=flops / 2e9,
                         paper_GFLOPs=TABLE4_GFLOPS.get(name)))
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m nnunet_ext.benchmark.dmc_flops flops``: parameters and FLOPs of the paper configurations
    (:func:`flops_table`). Step time and peak memory on nnU-Net plans: ``nnunet-ext benchmark`` (docs/benchmarks.md)."""
    ap = argparse.ArgumentParser(prog="python -m nnunet_ext.benchmark.dmc_flops")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("flops", help="parameters and FLOPs of the paper configurations (meta device)")
    ap.parse_args(argv)
    print("| variant | input | params (M) | paper params (M) | GFLOPs | GMACs | paper FLOPs (G) |")
    print("|---|---|---|---|---|---|---|")
    for r in flops_table():
        pp = "" if r["paper_params_M"] is None else f"{r['paper_params_M']:.2f}"
        pf = "" if r["paper_GFLOPs"] is None else f"{r['paper_GFLOPs']:.2f}"
        print(f"| {r['name']} | {'x'.join(map(str, r['input']))} | {r['params_M']:.2f} | {pp} | "
              f"{r['GFLOPs']:.2f} | {r['GMACs']:.2f} | {pf} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
