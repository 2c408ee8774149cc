"""``nnunet-ext predict-slices``: ``nnUNetv2_predict`` (same flags, same preprocessing, export and outputs) with a
sliding window of our own for **2d configurations**: several slices per forward pass, and no Gaussian weighting
when the patch covers the whole slice.

nnU-Net's ``predict_sliding_window_return_logits`` runs a 2d model one tile (= one slice at most) per forward and,
per tile, multiplies the logits by a Gaussian (fp16) and adds logits and Gaussian into fp16 accumulators, then
divides. For a network as small as MoNet (Knolle, Kaissis et al. 2021, Sec. 2: 403 k parameters) a batch of one
slice leaves a GPU mostly idle; on a CPU this path gains only nnU-Net's per-tile passes (measurements and the CPU
default: docs/monet.md).

What is the same as nnU-Net (:class:`nnunetv2.inference.predict_from_raw_data.nnUNetPredictor`, subclassed, not
forked): loading of the model folder and folds, preprocessing, padding to the patch (``pad_nd_image``), tile positions
(``compute_steps_for_sliding_window`` on the in-plane axes), test-time mirroring (nnU-Net's
``_internal_maybe_mirror_and_predict``, applied to a batch of slices), the Gaussian (``compute_gaussian``, same sigma
and scaling), the ensemble over folds, resampling and export. What differs:

* ``b`` slices go through the network at once (:meth:`SlicePredictor.slices_per_forward`: bounded by memory);
* the logits of a slab of ``b`` slices are accumulated in fp32 and divided by the summed Gaussian of the in-plane
  tiles before they are stored in the fp16 result (nnU-Net accumulates in fp16); with ONE tile per slice (the patch
  covers the slice, the usual 2d plan) nnU-Net's result is ``(g·l)/g = l`` up to fp16 rounding, so the weighting
  is skipped and the logits are stored directly.

Predictions equal nnU-Net's up to fp16 rounding of the accumulators (tests/unit/test_slice_predictor.py compares logits
and the exported segmentations). 3d configurations are left to nnU-Net's own sliding window.
"""
from __future__ import annotations

import argparse
from typing import List, Optional

import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

#: default memory budget of one forward pass (MB of the network's activations, see slices_per_forward). CPU: small,
#: because a batch of 256² slices runs no faster per slice than one slice (oneDNN's thin full-resolution
#: convolutions are memory-bound; docs/monet.md) — 256² slices go one per forward, small slices are batched.
#: GPU: a small network at batch 1 leaves most of the GPU idle, so slices are batched up to ~2 GB of activations.
DEFAULT_BATCH_MB = {"cpu": 64, "cuda": 2048, "mps": 1024}
#: at most this many slices per forward
MAX_SLICES_PER_FORWARD = 64


class SlicePredictor(nnUNetPredictor):
    """nnU-Net's predictor whose sliding window, for 2d configurations, predicts a slab of slices per forward pass.

    ``batch_mb``: memory budget (MB) for the activations of one forward pass; ``None``: :data:`DEFAULT_BATCH_MB` of
    the device type. ``slices_per_forward``: a fixed number instead (overrides ``batch_mb``)."""

    def __init__(self, *args, batch_mb: Optional[float] = None, slices_per_forward: Optional[int] = None, **kwargs):
        super().__init__(*args, **kwargs)
        if batch_mb is not None and not batch_mb > 0:
            raise ValueError(f"batch_mb must be > 0, got {batch_mb}")
        if slices_per_forward is not None and slices_per_forward < 1:
            raise ValueError(f"slices_per_forward must be >= 1, got {slices_per_forward}")
        self.batch_mb = batch_mb
        self.fixed_slices_per_forward = slices_per_forward

    # ------------------------------------------------------------------------------------------------ batch size
    def activation_bytes_per_slice(self, patch) -> int:
        """Bytes of activations of one ``patch``-sized slice: 4 bytes × the network's
        ``compute_conv_feature_map_size(patch)`` (the figure nnU-Net's planner uses for TRAINING, where every
        feature map is kept; at inference they are freed as the forward proceeds, so it is an upper bound), or,
        for a network without that method, 4 bytes × 256 maps of the patch."""
        net = getattr(self.network, "_orig_mod", self.network)
        n = None
        if hasattr(net, "compute_conv_feature_map_size"):
            try:
                n = int(net.compute_conv_feature_map_size(tuple(int(p) for p in patch)))
            except Exception:  # a network whose estimate fails on this patch: use the generic bound
                n = None
        if not n or n <= 0:
            n = 256 * int(torch.tensor(list(patch)).prod())
        return 4 * n

    def slices_per_forward(self, patch, n_slices: int) -> int:
        """``b`` = ⌊budget / activation_bytes_per_slice⌋, clipped to [1, min(n_slices, 64)]."""
        if self.fixed_slices_per_forward is not None:
            b = self.fixed_slices_per_forward
        else:
            mb = self.batch_mb if self.batch_mb is not None else DEFAULT_BATCH_MB.get(self.device.type, 512)
            b = int(mb * 2 ** 20 // self.activation_bytes_per_slice(patch))
        return max(1, min(b, MAX_SLICES_PER_FORWARD, n_slices))

    # ------------------------------------------------------------------------------------------------ prediction
    @torch.inference_mode()
    def predict_sliding_window_return_logits(self, input_image: torch.Tensor):
        patch = tuple(int(p) for p in self.configuration_manager.patch_size)
        if len(patch) != 2 or input_image.ndim != 4:
            return super().predict_sliding_window_return_logits(input_image)
        from nnunetv2.utilities.helpers import dummy_context, empty_cache

        self.network = self.network.to(self.device)
        self.network.eval()
        empty_cache(self.device)
        with torch.autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            if self.perform_everything_on_device and self.device.type != "cpu":
                try:
                    return self._predict_slabs(input_image, patch, self.device)
                except RuntimeError:  # nnU-Net's fallback: results on the CPU when the device runs out of memory
                    print("Prediction on device was unsuccessful, probably due to a lack of memory. Moving results "
                          "arrays to CPU")
                    empty_cache(self.device)
            return self._predict_slabs(input_image, patch, torch.device("cpu"))

    def _predict_slabs(self, input_image: torch.Tensor, patch, results_device: torch.device) -> torch.Tensor:
        from acvl_utils.cropping_and_padding.padding import pad_nd_image
        from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window
        from nnunetv2.utilities.helpers import empty_cache

        data, revert = pad_nd_image(input_image, patch, "constant", {"value": 0}, True, None)
        n_slices, size = data.shape[1], tuple(data.shape[2:])
        steps = compute_steps_for_sliding_window(size, patch, self.tile_step_size)
        tiles = [(slice(None), slice(None), slice(x, x + patch[0]), slice(y, y + patch[1]))
                 for x in steps[0] for y in steps[1]]
        weighted = len(tiles) > 1  # one tile: nnU-Net's (g * logits) / g is the logits
        if weighted:
            g = (compute_gaussian(patch, sigma_scale=1. / 8, value_scaling_factor=10, device=results_device).float()
                 if self.use_gaussian else torch.ones(patch, device=results_device))
            weight = torch.zeros(size, device=results_device)
            for t in tiles:
                weight[t[2:]] += g
        b = self.slices_per_forward(patch, n_slices)
        heads = self.label_manager.num_segmentation_heads
        logits = torch.empty((heads, n_slices, *size), dtype=torch.half, device=results_device)
        if self.verbose:
            print(f"slice predictor: {n_slices} slices of {size}, {len(tiles)} tile(s) per slice, patch {patch}, "
                  f"{b} slices per forward")
        try:
            for z0 in range(0, n_slices, b):
                slab = data[:, z0:z0 + b].transpose(0, 1).to(self.device).contiguous()  # (b, c, x, y)
                if not weighted:
                    out = self._internal_maybe_mirror_and_predict(slab)
                    logits[:, z0:z0 + b] = out.transpose(0, 1).to(results_device)
                    continue
                acc = torch.zeros((slab.shape[0], heads, *size), device=results_device)
                for t in tiles:
                    acc[t] += self._internal_maybe_mirror_and_predict(slab[t].contiguous()).to(results_device) * g
                acc /= weight
                logits[:, z0:z0 + b] = acc.transpose(0, 1)
            if torch.any(torch.isinf(logits)):
                raise RuntimeError("Encountered inf in predicted array (fp16 overflow of the logits). Aborting.")
        except Exception:
            del logits
            empty_cache(self.device)
            raise
        empty_cache(self.device)
        return logits[(slice(None), *revert[1:])]


# ------------------------------------------------------------------------------------------------ command line
def _split_own_args(argv: List[str]):
    """Our two flags out of ``argv`` (the rest goes to nnU-Net's parser)."""
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    own.add_argument("-batch_mb", type=float, default=None)
    own.add_argument("-slices_per_forward", type=int, default=None)
    ns, rest = own.parse_known_args(argv)
    return ns, rest


def cmd_predict_slices(args) -> int:
    from nnunet_ext.lookup import pass_through
    from nnunet_ext.errors import UserError
    from nnunet_ext.checks import check_predict_args

    own, rest = _split_own_args(args.args)
    if own.batch_mb is not None and not own.batch_mb > 0:
        raise UserError(f"-batch_mb {own.batch_mb:g}: must be > 0")
    if own.slices_per_forward is not None and own.slices_per_forward < 1:
        raise UserError(f"-slices_per_forward {own.slices_per_forward}: must be >= 1")
    if any(a in ("-h", "--help") for a in rest):
        print(f"nnunet-ext predict-slices: {args.help_line}.\nOwn flags: -batch_mb MB (memory budget of one forward; "
              f"default {DEFAULT_BATCH_MB}), -slices_per_forward N (fixed instead). Every other flag is "
              f"nnUNetv2_predict's:\n")
    check_predict_args(rest)

    import nnunetv2.inference.predict_from_raw_data as P

    class _Configured(SlicePredictor):
        def __init__(self, *a, **kw):
            super().__init__(*a, batch_mb=own.batch_mb, slices_per_forward=own.slices_per_forward, **kw)

    # nnU-Net's entry point builds ``nnUNetPredictor`` by name: run it with ours in that name (its own argparse,
    # checks, folds, preprocessing workers and export), then put nnU-Net's class back
    original = P.nnUNetPredictor
    P.nnUNetPredictor = _Configured
    try:
        return pass_through("nnunetv2.inference.predict_from_raw_data", "predict_entry_point",
                             "nnunet-ext predict-slices", rest)
    finally:
        P.nnUNetPredictor = original


def register_cli(subparsers, name: str, help: str) -> None:
    # prefix_chars="+": this parser knows no "-" flag, so every argument (nnU-Net's -i, -o, ...) lands in ``args``
    s = subparsers.add_parser(name, help=help, add_help=False, prefix_chars="+",
                              description="Runs nnUNetv2_predict with SlicePredictor. All flags are nnUNetv2_predict's "
                                          "plus -batch_mb / -slices_per_forward; see 'nnunet-ext predict-slices -h'.")
    s.add_argument("args", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_predict_slices, help_line=help)
