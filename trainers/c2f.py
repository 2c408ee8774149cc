"""Fine-stage training and the centre loss of the coarse-to-fine methods, as name suffixes for ANY of our trainers.

**Fine stage** (resdsn_c2f Sec. 3.2 / 4.1: "we randomly cropped 64x64x64 sub-volumes constrained to be from the
pancreas regions defined by ground-truth labels"; two_stage_unet Sec. 2.2: "the bounding boxes are extracted from the
ground-truth mask Y, and then enlarged by adding margins (10 pixels)"). ``<Trainer>_fine`` trains ``<Trainer>`` on
cases cropped to the ground-truth bounding box of the foreground (all non-background labels) plus a margin. The
crop happens when nnU-Net's data loader loads a case (:class:`FgBoxCroppedDataset` wraps nnU-Net's dataset class),
so nnU-Net's own patch sampling, foreground oversampling, padding and augmentation run unchanged on the cropped
case. A crop smaller than the patch is zero-padded (in normalised intensities) exactly as nnU-Net's sliding window
pads the coarse box at inference (``nnunet-ext predict-c2f``), so training and inference see the same thing.

Suffix tokens (no ``_`` inside a token):

``fine``          box + :data:`DEFAULT_FINE_MARGIN_MM` mm on every axis
``fine<M>mm``     box + M mm (``fine7p5mm`` = 7.5 mm), converted per axis with the configuration's spacing
``fine<K>vox``    box + K voxels of the preprocessed data on every axis (``fine10vox``: two_stage_unet's "10 pixels")

The margin becomes voxels of the preprocessed grid in one place (``nnunet_ext.boxes.fine_margin_voxels``), which
``nnunet-ext predict-c2f`` also uses for its boxes, on the same grid; by default it takes the fine trainer's own
margin (:func:`training_margin`), so training and inference crop alike.

Only the training/validation *data loaders* see crops. nnU-Net's final validation (``perform_actual_validation``)
would predict whole validation volumes with the fine model alone, which is not the coarse-to-fine method (a
box-trained fine model predicts false positives outside the box), so a ``_fine`` trainer skips it with a note in
the log and in ``fold_X/validation_skipped_c2f.txt``; ``nnunet-ext crossval-c2f`` scores the coarse + fine pair on
the fold's validation cases instead.

**Centre loss** (two_stage_unet Eq. 1): ``L = L_seg + gamma * L_center`` with ``L_center = sum_d |f(Y_d) - f(Yhat_d)|``,
``f`` the centre of mass of slice ``d`` (first spatial axis, the axial slices in nnU-Net's z, y, x order) of the
foreground (all non-background labels; the prediction's soft foreground probability 1 - p_background). ``gamma`` is
1e-3 for the first part of the schedule, then 0. The paper keeps it for "the initial 50 epochs" without giving its
total; we read that as 50 of nnU-Net's default 1000 epochs, i.e. the first 5% of ``num_epochs`` (at least one
epoch), changeable with the suffix. ``L_seg`` is the trainer's own loss (nnU-Net's Dice + CE with deep supervision);
the centre term is computed on the full-resolution output only.

``centre`` / ``center``    gamma = 1e-3 for the first 5% of the epochs
``centre<P>pct``           ... for the first P% of the epochs

Explicit trainers (one line each) at the bottom of the module: ``nnUNetTrainerPlainUNetFine``,
``nnUNetTrainerResDSNFine`` (box + 10 mm) and ``nnUNetTrainerTwoStageUNetFine`` (box + 10 mm); any other
fine-stage trainer is a name, e.g. ``nnUNetTrainerSResDSN_fine``, ``nnUNetTrainerDSN_fine5mm_10epochs``.
"""
from __future__ import annotations

import math
import re
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from nnunet_ext.boxes import (Box, bbox_with_margin_mm, box_size, box_slices, configuration_grid_spacing,  # noqa: F401
                             expand_bbox, fine_margin_voxels, foreground_bbox, margin_in_voxels, scale_bbox)

from ._naming import register_suffix
from .plain_unet import nnUNetTrainerPlainUNet
from .resdsn import nnUNetTrainerResDSN, nnUNetTrainerTwoStageUNet

#: margin of ``_fine`` (mm); ``predict-c2f``'s box margin for a fine model not trained on boxes (by default it takes
#: the fine trainer's own margin, :func:`training_margin`)
DEFAULT_FINE_MARGIN_MM = 10.0
#: two_stage_unet Sec. 2.2: ground-truth boxes + "10 pixels" (NIH pancreas: 0.5-1 mm pixels, 1.5-2.5 mm slices);
#: here 10 mm on every axis, so training and inference share one margin in mm (docs/c2f.md)
TWO_STAGE_FINE_MARGIN_MM = 10.0
#: two_stage_unet's "10 pixels" as voxels of the preprocessed grid (the ``_fine10vox`` suffix)
TWO_STAGE_FINE_MARGIN_VOX = 10
#: two_stage_unet Sec. 2.3: gamma = 1e-3 ...
CENTRE_GAMMA = 1e-3
#: ... for the initial 50 epochs; read as 50 of nnU-Net's default 1000 epochs
CENTRE_EPOCH_FRACTION = 50 / 1000


# ------------------------------------------------------------------------------------------------ fine-stage data
class FgBoxCroppedDataset:
    """nnU-Net dataset (any of its classes) whose ``load_case`` returns the case cropped to the ground-truth
    foreground box plus a margin; ``class_locations`` (nnU-Net's foreground-oversampling samples) are shifted into
    the crop. Boxes are computed once per case from the preprocessed segmentation and cached."""

    def __init__(self, dataset, margin_mm: Optional[float] = None, margin_vox: Optional[int] = None,
                 spacing: Optional[Sequence[float]] = None, ignore_label: Optional[int] = None,
                 transpose_forward: Sequence[int] = (0, 1, 2)):
        if (margin_mm is None) == (margin_vox is None):
            raise ValueError("give exactly one of margin_mm and margin_vox")
        self.dataset = dataset
        self.identifiers = dataset.identifiers
        self.margin_mm, self.margin_vox = margin_mm, margin_vox
        self.spacing = None if spacing is None else [float(s) for s in spacing]
        self.ignore_label = ignore_label
        self.transpose_forward = list(transpose_forward)
        self._boxes: Dict[str, Optional[Box]] = {}

    def __getattr__(self, item):  # everything else (source_folder, ...) from the wrapped dataset
        if item == "dataset":
            raise AttributeError(item)
        return getattr(self.dataset, item)

    def __getitem__(self, identifier):
        return self.load_case(identifier)

    def _spacing_of(self, properties: dict, ndim: int) -> Sequence[float]:
        """The fine grid's spacing (boxes.configuration_grid_spacing, as predict-c2f computes it)."""
        if self.spacing is not None and len(self.spacing) == ndim:
            return self.spacing
        original = [properties["spacing"][i] for i in self.transpose_forward]
        return original if self.spacing is None else configuration_grid_spacing(self.spacing, original)

    def box_of(self, identifier: str, seg, properties: dict) -> Optional[Box]:
        if identifier not in self._boxes:
            s = np.asarray(seg[:])[0]
            fg = s > 0
            if self.ignore_label is not None:
                fg &= s != self.ignore_label
            box = foreground_bbox(fg)
            if box is not None:
                margin = fine_margin_voxels(self.margin_mm, self.margin_vox, self._spacing_of(properties, fg.ndim))
                box = expand_bbox(box, margin, fg.shape)
            self._boxes[identifier] = box
        return self._boxes[identifier]

    def load_case(self, identifier):
        data, seg, seg_prev, properties = self.dataset.load_case(identifier)
        box = self.box_of(identifier, seg, properties)
        if box is None:  # no foreground in this case: nothing to crop to, keep it whole
            return data, seg, seg_prev, properties
        sl = (slice(None), *box_slices(box))
        data = np.asarray(data[sl])
        seg = np.asarray(seg[sl])
        if seg_prev is not None:
            seg_prev = np.asarray(seg_prev[box_slices(box)] if np.ndim(seg_prev) == len(box) else seg_prev[sl])
        properties = dict(properties)
        lo = np.array([0] + [b[0] for b in box])
        hi = np.array([np.iinfo(np.int64).max] + [b[1] for b in box])
        locs = {}
        for k, v in properties.get("class_locations", {}).items():
            v = np.asarray(v)
            if v.size == 0:
                locs[k] = v
                continue
            inside = np.all((v >= lo) & (v < hi), axis=1)
            locs[k] = v[inside] - lo
        properties["class_locations"] = locs
        properties["c2f_fg_box"] = box
        return data, seg, seg_prev, properties


class FineStageMixin:
    """Mixin of ``<Trainer>_fine``: the training and validation data loaders see each case cropped to its
    ground-truth foreground box + margin (class attributes ``fine_margin_mm`` / ``fine_margin_vox``)."""

    fine_margin_mm: Optional[float] = DEFAULT_FINE_MARGIN_MM
    fine_margin_vox: Optional[int] = None

    def get_tr_and_val_datasets(self):
        dataset_tr, dataset_val = super().get_tr_and_val_datasets()
        kw = dict(margin_mm=None if self.fine_margin_vox is not None else self.fine_margin_mm,
                  margin_vox=self.fine_margin_vox, spacing=self.configuration_manager.spacing,
                  ignore_label=self.label_manager.ignore_label,
                  transpose_forward=self.plans_manager.transpose_forward)
        margin = f"{self.fine_margin_vox} voxels" if self.fine_margin_vox is not None else f"{self.fine_margin_mm} mm"
        self.print_to_log_file(f"fine stage: patches sampled inside the ground-truth foreground box + {margin}")
        return FgBoxCroppedDataset(dataset_tr, **kw), FgBoxCroppedDataset(dataset_val, **kw)

    def perform_actual_validation(self, save_probabilities: bool = False):
        """Skipped (see the module docstring): nothing in ``fold_X/validation`` passes off the fine model alone over
        whole volumes as the method; a note says how to score the pair."""
        note = (f"nnU-Net's final validation is skipped for the fine-stage trainer {type(self).__name__}: it would "
                f"predict whole validation volumes with the fine model alone, which is not the coarse-to-fine "
                f"method. Score the pair on this fold's validation cases with: nnunet-ext crossval-c2f -d "
                f"{self.plans_manager.dataset_name} --coarse COARSE_TRAINER:CONFIG --fine {type(self).__name__}:"
                f"{self.configuration_name} -f {self.fold}")
        self.print_to_log_file(note)
        if self.local_rank == 0:
            with open(f"{self.output_folder}/validation_skipped_c2f.txt", "w") as f:
                f.write(note + "\n")


def _fine_suffix(m: "re.Match[str]"):
    value, unit = m.group(1), m.group(2)
    if value is None:
        return {}, {"fine_margin_mm": DEFAULT_FINE_MARGIN_MM, "fine_margin_vox": None}, (FineStageMixin,)
    v = float(value.replace("p", "."))
    if unit == "vox":
        if v != int(v):
            raise ValueError(f"a margin in voxels must be a whole number, got {m.group(0)!r}")
        return {}, {"fine_margin_mm": None, "fine_margin_vox": int(v)}, (FineStageMixin,)
    return {}, {"fine_margin_mm": v, "fine_margin_vox": None}, (FineStageMixin,)


register_suffix("fine", r"fine(?:(\d+(?:p\d+)?)(mm|vox))?", _fine_suffix,
                "fine stage: patches only inside the ground-truth foreground box + margin "
                f"(_fine = {DEFAULT_FINE_MARGIN_MM:g} mm, _fine<M>mm, _fine<K>vox)",
                applies_to=lambda base: not issubclass(base, FineStageMixin))


# ------------------------------------------------------------------------------------------------ centre loss
def slice_centres(mask: torch.Tensor, eps: float = 1e-6) -> Tuple[torch.Tensor, torch.Tensor]:
    """Centre of mass (in voxel coordinates) of every slice along the first spatial axis of a soft/binary mask.

    ``mask``: (b, z, y, x) or (b, y, x) (a 2D image is one slice). Returns ``(centres, mass)``: centres (b, d, 2)
    (y, x) = ``sum_(u,v) (u, v) Y_d(u, v) / zeta`` with ``zeta = sum Y_d`` (two_stage_unet Eq. 1), and the mass
    (b, d) (zeta)."""
    if mask.ndim == 3:
        mask = mask[:, None]
    b, d, h, w = mask.shape
    mass = mask.sum(dim=(2, 3))
    yy = torch.arange(h, device=mask.device, dtype=mask.dtype)
    xx = torch.arange(w, device=mask.device, dtype=mask.dtype)
    cy = (mask.sum(dim=3) * yy).sum(dim=2) / (mass + eps)
    cx = (mask.sum(dim=2) * xx).sum(dim=2) / (mass + eps)
    return torch.stack((cy, cx), dim=-1), mass


def centre_loss(logits: torch.Tensor, target: torch.Tensor, regions: bool = False,
                ignore_label: Optional[int] = None) -> torch.Tensor:
    """``L_center = sum_d |f(Y_d) - f(Yhat_d)|`` (two_stage_unet Eq. 1), averaged over the batch. ``Yhat`` is the
    soft foreground (1 - softmax background; for region training the max of the sigmoids), ``Y`` the binary
    foreground of ``target`` (b, 1, ...). Slices without ground-truth foreground have no centre and are skipped."""
    logits = logits.float()
    if regions:
        p_fg = torch.sigmoid(logits).amax(dim=1)
        y = (target > 0).any(dim=1)
    else:
        p_fg = 1 - torch.softmax(logits, dim=1)[:, 0]
        t = target[:, 0]
        y = t > 0
        if ignore_label is not None:
            y = y & (t != ignore_label)
    c_pred, _ = slice_centres(p_fg)
    c_true, mass_true = slice_centres(y.to(p_fg.dtype))
    dist = torch.linalg.vector_norm(c_pred - c_true, dim=-1)
    dist = torch.where(mass_true > 0, dist, torch.zeros_like(dist))
    return dist.sum(dim=1).mean()


class CentreLossWrapper(nn.Module):
    """``loss(output, target) + gamma * centre_loss(highest-resolution output, target)``; ``gamma`` is set by the
    trainer at every epoch start."""

    def __init__(self, loss: nn.Module, gamma: float, regions: bool, ignore_label: Optional[int]):
        super().__init__()
        self.loss, self.gamma, self.regions, self.ignore_label = loss, float(gamma), regions, ignore_label

    def forward(self, output, target):
        base = self.loss(output, target)
        if self.gamma == 0:
            return base
        out0 = output[0] if isinstance(output, (list, tuple)) else output
        tgt0 = target[0] if isinstance(target, (list, tuple)) else target
        return base + self.gamma * centre_loss(out0, tgt0, self.regions, self.ignore_label)


class CentreLossMixin:
    """Mixin of ``<Trainer>_centre``: adds two_stage_unet's centre loss (gamma = ``centre_gamma`` for the first
    ``centre_epoch_fraction`` of ``num_epochs``, at least one epoch; then 0)."""

    centre_gamma: float = CENTRE_GAMMA
    centre_epoch_fraction: float = CENTRE_EPOCH_FRACTION

    def centre_gamma_at(self, epoch: int) -> float:
        n_on = max(1, int(math.ceil(self.centre_epoch_fraction * self.num_epochs - 1e-9)))
        return self.centre_gamma if epoch < n_on else 0.0

    def _build_loss(self):
        return CentreLossWrapper(super()._build_loss(), self.centre_gamma_at(0), self.label_manager.has_regions,
                                 self.label_manager.ignore_label)

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self.loss.gamma = self.centre_gamma_at(self.current_epoch)


def _centre_suffix(m: "re.Match[str]"):
    if m.group(1) is None:
        return {}, {"centre_epoch_fraction": CENTRE_EPOCH_FRACTION}, (CentreLossMixin,)
    pct = int(m.group(1))
    if not 0 < pct <= 100:
        raise ValueError(f"centre-loss percentage must be in 1..100, got {m.group(0)!r}")
    return {}, {"centre_epoch_fraction": pct / 100}, (CentreLossMixin,)


register_suffix("centre", r"cent(?:re|er)(?:(\d+)pct)?", _centre_suffix,
                "two_stage_unet's centre loss: + 1e-3 * per-slice centre-of-mass distance for the first 5% "
                "(or <P>pct) of the epochs", applies_to=lambda base: not issubclass(base, CentreLossMixin))


# ------------------------------------------------------------------------------------------------ explicit trainers
class nnUNetTrainerPlainUNetFine(FineStageMixin, nnUNetTrainerPlainUNet):
    """Plain U-Net fine stage (box + 10 mm)."""


class nnUNetTrainerResDSNFine(FineStageMixin, nnUNetTrainerResDSN):
    """ResDSN Fine (resdsn_c2f Sec. 3.2): patches inside the ground-truth box + 10 mm."""


class nnUNetTrainerTwoStageUNetFine(FineStageMixin, nnUNetTrainerTwoStageUNet):
    """Two-stage 3D U-Net, stage 2 (two_stage_unet Sec. 2.2): ground-truth box + 10 mm (the paper's "10 pixels" in
    mm, the margin ``predict-c2f --mode two-stage`` gives box 2 by default). The paper's loss adds the centre loss in
    both stages: ``nnUNetTrainerTwoStageUNetFine_centre`` (and ``nnUNetTrainerTwoStageUNet_centre`` for the coarse
    stage on ``make-coarse-config``'s configuration)."""
    fine_margin_mm = TWO_STAGE_FINE_MARGIN_MM
    fine_margin_vox = None


def training_margin(trainer_cls: type) -> Tuple[Optional[float], Optional[int]]:
    """(margin in mm, margin in voxels) of a fine-stage trainer's training boxes, exactly one not None; (None, None)
    for a trainer that does not train on boxes. ``predict-c2f`` gives its boxes this margin unless told otherwise."""
    if not (isinstance(trainer_cls, type) and issubclass(trainer_cls, FineStageMixin)):
        return None, None
    if trainer_cls.fine_margin_vox is not None:
        return None, int(trainer_cls.fine_margin_vox)
    return float(trainer_cls.fine_margin_mm), None
