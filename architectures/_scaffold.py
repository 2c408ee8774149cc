"""One U-Net scaffold for the families of nnunet-ext (a private module: not a family, registers nothing).

Every U-Net of this package (DMC-Net, ResDSN, DLKUNet, MoNet) is the same skeleton, in dynamic_network_architectures'
conventions; a family provides only its blocks, as small factory callables:

:class:`UNetEncoder`
    stage ``s`` = downsampling (max pooling or a strided convolution; none where the stride is 1) then the family's
    block ``C_{s-1} -> C_s``; returns every stage's output (the skips), highest resolution first.
:class:`UNetDecoder`
    step ``i`` (deepest first) returns to encoder stage ``s = n - 2 - i``: upsampling of the map below, fusion with
    the skip of stage ``s`` (concatenation or sum), the family's block; one 1x1 head per resolution below the
    bottleneck, all always built (the same state_dict with deep supervision on and off). ``deep_supervision`` (the
    switch nnU-Net flips) returns every head's output, highest resolution first, else the full-resolution one.
:class:`ScaffoldUNet`
    ``forward = decoder(encoder(x))`` and ``compute_conv_feature_map_size`` (a Python ``int``).

dynamic_network_architectures' ``PlainConvEncoder``/``UNetDecoder`` build their own ``StackedConvBlocks`` and take
no block factory, so they cannot host these blocks; the attribute layout below follows theirs (``stages``,
``transpconvs``, ``seg_layers``, ``output_channels``, ``strides``, ``conv_op``). Two layout switches keep the
families' existing state_dict keys (checkpoints trained before the scaffold load unchanged): where the downsampling
lives (``layout``) and the name of the upsampling list (``up_name``).

Every sub-block that produces feature maps has ``compute_conv_feature_map_size(input_size) -> int`` (the numel of
its convolution outputs for one sample, what nnU-Net's planner budgets); a decoder block that takes the map below
and the skip has ``compute_conv_feature_map_size(skip_size, below_size)``.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch
from dynamic_network_architectures.building_blocks.helper import get_matching_pool_op
from torch import nn
from torch.nn.modules.conv import _ConvNd

from ._common import prod

__all__ = ["UNetEncoder", "UNetDecoder", "ScaffoldUNet", "max_pool", "feature_map_size", "FUSIONS"]


def max_pool(conv_op, stride: Sequence[int]) -> nn.Module:
    """Max pooling with kernel = stride (the papers' operator), ``nn.Identity`` where the stride is 1 on every axis."""
    if all(int(v) == 1 for v in stride):
        return nn.Identity()
    return get_matching_pool_op(conv_op, pool_type="max")(kernel_size=stride, stride=stride)


def feature_map_size(module: nn.Module, input_size: Sequence[int]) -> int:
    """``module.compute_conv_feature_map_size(input_size)`` as an int; an ``nn.Sequential`` of blocks sums its
    blocks' (all at the same size); a module without the method (pooling, identity) counts 0."""
    if hasattr(module, "compute_conv_feature_map_size"):
        return int(module.compute_conv_feature_map_size(input_size))
    if isinstance(module, nn.Sequential):
        return sum(feature_map_size(m, input_size) for m in module)
    return 0


class UNetEncoder(nn.Module):
    """Stage ``s``: ``make_down(s, in_channels, strides[s])`` (``None``: no downsampling) then
    ``make_block(s, in_channels, features_per_stage[s])`` (a module, or a list of modules run in sequence).

    ``layout="separate"``: ``self.pools[s]`` (``nn.Identity`` where there is none) and ``self.stages[s]`` (the block);
    ``layout="sequential"``: ``self.stages[s] = nn.Sequential(down, *block)`` (``down`` left out where ``None``).
    ``input_projection``: a module applied to the input first (its ``out_channels`` feed stage 0).
    ``check_size(stage, size, stride, input_size)``: the family's ValueError for a map a stage cannot take; called
    in ``forward`` and ``stage_sizes``. Stage sizes are ``floor(size / stride)`` per axis.
    """

    def __init__(self, input_channels: int, features_per_stage: Sequence[int], strides: Sequence[Sequence[int]],
                 make_block: Callable[[int, int, int], object],
                 make_down: Optional[Callable[[int, int, Sequence[int]], Optional[nn.Module]]] = None, *,
                 conv_op, kernel_sizes: Optional[Sequence] = None, layout: str = "separate",
                 input_projection: Optional[nn.Module] = None,
                 check_size: Optional[Callable[[int, Sequence[int], Sequence[int], Sequence[int]], None]] = None):
        super().__init__()
        if layout not in ("separate", "sequential"):
            raise ValueError(f"UNetEncoder: layout must be 'separate' or 'sequential', got {layout!r}")
        self.layout, self.check_size = layout, check_size
        self.conv_op, self.strides, self.kernel_sizes = conv_op, list(strides), kernel_sizes
        self.output_channels = list(features_per_stage)
        self.input_projection = input_projection
        if layout == "separate":
            self.pools = nn.ModuleList()
        self.stages = nn.ModuleList()
        self._n_down: List[int] = []
        cin = input_channels if input_projection is None else input_projection.out_channels
        for s, (c, st) in enumerate(zip(self.output_channels, self.strides)):
            down = make_down(s, cin, st) if make_down is not None else None
            block = make_block(s, cin, c)
            blocks = list(block) if isinstance(block, (list, tuple)) else [block]
            if layout == "separate":
                self.pools.append(nn.Identity() if down is None else down)
                self.stages.append(blocks[0] if len(blocks) == 1 else nn.Sequential(*blocks))
            else:
                self.stages.append(nn.Sequential(*([] if down is None else [down]), *blocks))
            self._n_down.append(int(layout == "sequential" and down is not None))
            cin = c

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if self.input_projection is not None:
            x = self.input_projection(x)
        input_size, skips = tuple(x.shape[2:]), []
        for s, stage in enumerate(self.stages):
            if self.check_size is not None:
                self.check_size(s, tuple(x.shape[2:]), self.strides[s], input_size)
            x = stage(self.pools[s](x) if self.layout == "separate" else x)
            skips.append(x)
        return skips

    def stage_sizes(self, input_size: Sequence[int]) -> List[List[int]]:
        """Spatial size of every stage's output, highest resolution first."""
        sizes, cur = [], [int(n) for n in input_size]
        for s, st in enumerate(self.strides):
            if self.check_size is not None:
                self.check_size(s, tuple(cur), st, tuple(input_size))
            cur = [n // int(v) for n, v in zip(cur, st)]
            sizes.append(cur)
        return sizes

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        out = 0 if self.input_projection is None else self.input_projection.out_channels * prod(input_size)
        prev = list(input_size)
        for s, size in enumerate(self.stage_sizes(input_size)):
            if self.layout == "separate":
                out += feature_map_size(self.pools[s], prev) + feature_map_size(self.stages[s], size)
            else:
                k = self._n_down[s]
                out += sum(feature_map_size(m, prev) for m in self.stages[s][:k])   # a strided conv: its output
                out += sum(feature_map_size(m, size) for m in self.stages[s][k:])
            prev = size
        return int(out)


#: how a decoder step joins the upsampled map and the skip
FUSIONS = {
    "cat": lambda up, skip: torch.cat((up, skip), 1),             # [up, skip] (dynamic_network_architectures)
    "cat_skip_first": lambda up, skip: torch.cat((skip, up), 1),  # [skip, up]
    "sum": lambda up, skip: up + skip,                            # a long residual connection
    "none": lambda up, skip: up,                                  # no skip connection
}


class UNetDecoder(nn.Module):
    """Step ``i`` returns to encoder stage ``s = n - 2 - i`` (deepest first). With ``make_up``:
    ``x = stages[i](fuse(up_i(x), skip_s))`` where ``up_i = make_up(s)`` lives in ``self.<up_name>`` (a transposed
    convolution is given the skip's size as ``output_size`` when ``match_skip_size``); without ``make_up`` the block
    does everything: ``x = stages[i](x, skip_s)``. ``make_stage(s)`` is the block, ``make_head(s)`` the 1x1 head at
    resolution ``s`` (``seg_layers`` deepest first, or indexed by resolution with ``heads_by_resolution``).

    Outputs: the head at resolution 0 on the last decoder map; with ``deep_supervision`` also the heads at
    resolutions 1 ... n-2, on the decoder maps (``head_taps="decoder"``) or on the encoder's skips
    (``"encoder"``), highest resolution first.
    """

    def __init__(self, encoder: UNetEncoder, num_classes: int, deep_supervision: bool,
                 make_stage: Callable[[int], nn.Module], make_head: Callable[[int], nn.Module],
                 make_up: Optional[Callable[[int], nn.Module]] = None, *, fuse: str = "cat",
                 up_name: str = "transpconvs", match_skip_size: bool = False, heads_by_resolution: bool = False,
                 head_taps: str = "decoder"):
        super().__init__()
        if fuse not in FUSIONS:
            raise ValueError(f"UNetDecoder: fuse must be one of {sorted(FUSIONS)}, got {fuse!r}")
        if head_taps not in ("decoder", "encoder"):
            raise ValueError(f"UNetDecoder: head_taps must be 'decoder' or 'encoder', got {head_taps!r}")
        self.deep_supervision, self.num_classes = deep_supervision, num_classes
        self.fuse, self.match_skip_size, self.head_taps = fuse, match_skip_size, head_taps
        self.heads_by_resolution = heads_by_resolution
        self.up_name = up_name if make_up is not None else None
        n = len(encoder.output_channels)
        if make_up is not None:
            setattr(self, up_name, nn.ModuleList())
        self.stages, self.seg_layers = nn.ModuleList(), nn.ModuleList()
        for s in range(n - 2, -1, -1):
            if make_up is not None:
                getattr(self, up_name).append(make_up(s))
            self.stages.append(make_stage(s))
            if not heads_by_resolution:
                self.seg_layers.append(make_head(s))
        if heads_by_resolution:
            self.seg_layers.extend(make_head(s) for s in range(n - 1))

    def _head(self, s: int) -> nn.Module:
        return self.seg_layers[s if self.heads_by_resolution else len(self.seg_layers) - 1 - s]

    def forward(self, skips: List[torch.Tensor]):
        n = len(skips)
        x, feats = skips[-1], [None] * (n - 1)
        ups = None if self.up_name is None else getattr(self, self.up_name)
        for i, stage in enumerate(self.stages):
            s = n - 2 - i
            skip = skips[s]
            if ups is None:
                x = stage(x, skip)
            else:
                up = ups[i](x, output_size=list(skip.shape[2:])) if self.match_skip_size else ups[i](x)
                x = stage(FUSIONS[self.fuse](up, skip))
            feats[s] = x
        main = self._head(0)(feats[0])
        if not self.deep_supervision:
            return main
        taps = skips if self.head_taps == "encoder" else feats
        return [main] + [self._head(s)(taps[s]) for s in range(1, n - 1)]

    def compute_conv_feature_map_size(self, stage_sizes: Sequence[Sequence[int]]) -> int:
        """Upsampling outputs, blocks and the heads that run, for the encoder's ``stage_sizes``."""
        n, out = len(stage_sizes), 0
        ups = None if self.up_name is None else getattr(self, self.up_name)
        for i, stage in enumerate(self.stages):
            s = n - 2 - i
            if ups is None:
                out += int(stage.compute_conv_feature_map_size(stage_sizes[s], stage_sizes[s + 1]))
            else:
                conv = next(m for m in ups[i].modules() if isinstance(m, _ConvNd))
                out += conv.out_channels * prod(stage_sizes[s]) + feature_map_size(stage, stage_sizes[s])
        heads = range(n - 1) if self.deep_supervision else [0]
        return int(out + sum(self.num_classes * prod(stage_sizes[s]) for s in heads))


class ScaffoldUNet(nn.Module):
    """Base of the families' U-Nets: ``self.encoder`` (:class:`UNetEncoder`) and ``self.decoder``
    (:class:`UNetDecoder`) set by the subclass; ``check_input_size`` is the family's hook for a readable error."""

    def check_input_size(self, spatial: Sequence[int]) -> None:
        """ValueError for a patch the network cannot take; the default checks the number of axes."""
        dim = len(self.encoder.strides[0])
        if len(spatial) != dim:
            raise ValueError(f"{type(self).__name__}: input size {tuple(spatial)} has {len(spatial)} axes, "
                             f"the network is {dim}D (give the spatial size only)")

    def forward(self, x: torch.Tensor):
        return self.decoder(self.encoder(x))

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> int:
        self.check_input_size(input_size)
        return int(self.encoder.compute_conv_feature_map_size(input_size)
                   + self.decoder.compute_conv_feature_map_size(self.encoder.stage_sizes(input_size)))
