"""The fine stage of coarse-to-fine on the test dataset, with models whose outputs are known: its intensities are
nnU-Net's training-time ones, the crop -> predict -> paste path equals whole-volume prediction inside the box, and
``predict-c2f`` with an oracle pair runs the fine model on the coarse box only (the trained pair:
tests/integration/test_c2f.py)."""
from __future__ import annotations

import json
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import nnunet_ext
from nnunet_ext.c2f import pipeline as c2f
from nnunet_ext.trainers import c2f as tc2f
from nnunet_ext.trainers.c2f import FgBoxCroppedDataset
from tests.helpers import assert_predictions_match_inputs, c2f_cmd, run, shared


# ------------------------------------------------------------------------------------------------ fine-stage intensities
def _zscore_predictor(ds, threshold=None, spacing_factor=1.0):
    """A predictor-like object with the dataset's 3d_fullres plans switched to ZScore normalisation (a non-CT
    channel); with ``threshold``, its "network" labels 1 where the normalised intensity exceeds it."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = json.loads(ds.plans_file.read_text())
    conf = plans["configurations"]["3d_fullres"]
    conf.update(normalization_schemes=["ZScoreNormalization"], use_mask_for_norm=[False],
                spacing=[s * f for s, f in zip(conf["spacing"], (1.0, spacing_factor, spacing_factor))])
    pm = PlansManager(plans)
    dj = json.loads((ds.dataset_folder / "dataset.json").read_text())

    def logits(x):  # background 0, label 1 = 20 * (x - threshold), label 2 never
        x = x[0].float()
        return torch.stack([torch.zeros_like(x), 20 * (x - threshold), torch.full_like(x, -100.0)])

    return SimpleNamespace(plans_manager=pm, configuration_manager=pm.get_configuration("3d_fullres"),
                           dataset_json=dj, label_manager=pm.get_label_manager(dj),
                           predict_logits_from_preprocessed_data=logits)


def _training_case(ds):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    case = sorted(p.name[: -len("_0000.nii.gz")] for p in (ds.dataset_folder / "imagesTr").glob("*_0000.nii.gz"))[0]
    image, props = SimpleITKIO().read_images([str(ds.dataset_folder / "imagesTr" / f"{case}_0000.nii.gz")])
    seg, _ = SimpleITKIO().read_seg(str(ds.dataset_folder / "labelsTr" / f"{case}.nii.gz"))
    return image, seg, props


def test_fine_stage_sees_training_time_intensities_zscore(nnunet_dataset):
    """ZScore channel: the fine trainer's crop of nnU-Net's preprocessed case (FgBoxCroppedDataset) and
    predict-c2f's inference-time crop of the same box agree; preprocessing the raw crop (the old way) does not."""
    pred = _zscore_predictor(nnunet_dataset)
    pm, cm = pred.plans_manager, pred.configuration_manager
    image, seg, props = _training_case(nnunet_dataset)
    # training time: nnU-Net's preprocessing of the whole case, cropped by the fine trainer's dataset wrapper
    data, seg_pre, p_pre = cm.preprocessor_class(verbose=False).run_case_npy(
        image, seg, dict(props), pm, cm, pred.dataset_json)
    fake = SimpleNamespace(identifiers=["c"], load_case=lambda i: (data, seg_pre, None, {"class_locations": {}}))
    wrapped = FgBoxCroppedDataset(fake, margin_mm=10.0, spacing=cm.spacing, transpose_forward=pm.transpose_forward)
    train_crop, train_seg, _, tprops = wrapped.load_case("c")
    organ = train_seg[0] > 0
    # inference time: the same box in raw coordinates, mapped back the way predict-c2f maps the coarse box
    pre = c2f.preprocess(pred, image, props["spacing"])
    raw_box = c2f.preprocessed_box_to_raw(tprops["c2f_fg_box"], pre.data.shape[1:], pre.props,
                                          pm.transpose_backward)
    _, bp = c2f.raw_box_to_preprocessed(raw_box, pre.props, pre.data.shape[1:], pm.transpose_forward)
    assert bp == tprops["c2f_fg_box"]
    infer_crop = pre.data[(slice(None), *tc2f.box_slices(bp))]
    np.testing.assert_allclose(infer_crop, train_crop, atol=1e-5)
    train_mean = float(train_crop[0][organ].mean())
    # the old way: nnU-Net's preprocessing of the raw crop normalises with the crop's own statistics
    crop_sl = (slice(None), *tc2f.box_slices(raw_box))
    old, old_seg, _ = cm.preprocessor_class(verbose=False).run_case_npy(
        np.ascontiguousarray(image[crop_sl]), np.ascontiguousarray(seg[crop_sl]), {"spacing": props["spacing"]},
        pm, cm, pred.dataset_json)
    old_mean = float(old[0][old_seg[0] > 0].mean())
    assert abs(old_mean - train_mean) > 0.5, (old_mean, train_mean)


@pytest.mark.parametrize("spacing_factor", [1.0, 1.3])
def test_run_fine_in_box_matches_whole_volume_prediction_inside_the_box(nnunet_dataset, spacing_factor):
    """The crop -> predict -> paste into the whole grid -> nnU-Net's export path gives, inside the box (but for a
    rim of 2 voxels where the export's interpolation reaches the background outside), exactly what the same
    (pointwise) model gives over the whole volume with nnU-Net's export, and nothing outside the box."""
    pred0 = _zscore_predictor(nnunet_dataset, spacing_factor=spacing_factor)
    image, seg, props = _training_case(nnunet_dataset)
    pre = c2f.preprocess(pred0, image, props["spacing"])
    pred = _zscore_predictor(nnunet_dataset, float(np.percentile(pre.data[0], 97)), spacing_factor)
    pm = pred.plans_manager
    whole = c2f.run_stage(pred, image, props["spacing"], pre=pre).seg
    _, grid_box = c2f.raw_box_to_preprocessed(tc2f.bbox_with_margin_mm(seg[0] > 0, 10.0, props["spacing"]), pre.props,
                                              pre.data.shape[1:], pm.transpose_forward)
    box = c2f.preprocessed_box_to_raw(grid_box, pre.data.shape[1:], pre.props, pm.transpose_backward)
    shape = image.shape[1:]
    inbox = c2f.run_fine_in_box(pred, pre, grid_box)
    assert inbox.shape == tuple(shape) and inbox.dtype == np.uint8
    inside = np.zeros(shape, bool)
    inside[tc2f.box_slices(box)] = True
    interior = np.zeros(shape, bool)
    interior[tuple(slice(lo + 2, hi - 2) for lo, hi in box)] = True
    assert not inbox[~inside].any() and inbox[interior].any()
    np.testing.assert_array_equal(inbox[interior], whole[interior])
    assert whole[~inside].any()  # the pointwise model does find things outside the box: the clearing is real


# ------------------------------------------------------------------------------------------------ oracle pair
_ORACLE_TRAINERS = '''
import torch
from torch import nn
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class ThresholdNet(nn.Module):
    """Label 1 where the (normalised) intensity exceeds ``threshold``: a "model" whose output is known."""

    def __init__(self, threshold, num_classes):
        super().__init__()
        self.threshold, self.num_classes = threshold, num_classes

    def forward(self, x):
        fg = 20 * (x[:, :1] - self.threshold)
        rest = torch.full_like(fg, -100.0).repeat(1, self.num_classes - 2, 1, 1, 1)
        return torch.cat([torch.zeros_like(fg), fg, rest], 1)


class nnUNetTrainerC2FTestOracleHigh(nnUNetTrainer):
    threshold = 1.0

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision=True):
        return ThresholdNet(cls.threshold, num_output_channels)


class nnUNetTrainerC2FTestOracleLow(nnUNetTrainerC2FTestOracleHigh):
    threshold = -1.0
'''


@shared("nnunet_dataset")
def oracle_pair(nnunet_dataset, base):
    """Two "trained models" with known outputs (no training): label 1 where the normalised intensity is > 1
    (coarse, High) or > -1 (fine, Low), and test images on which High finds exactly the organ while Low also finds a
    decoy block of the same size far from it: the fine model run outside the box would put the decoy in the output."""
    import SimpleITK as sitk
    from scipy import ndimage

    ds = nnunet_dataset
    (base / "trainers").mkdir()
    (base / "trainers" / "c2f_oracle_trainers.py").write_text(_ORACLE_TRAINERS)
    env = {**ds.env, "nnUNet_extTrainer": nnunet_ext.EXT_TRAINER_DIR + os.pathsep + str(base / "trainers")}
    plans = json.loads(ds.plans_file.read_text())
    ip = plans["foreground_intensity_properties_per_channel"]["0"]
    for name in ("nnUNetTrainerC2FTestOracleHigh", "nnUNetTrainerC2FTestOracleLow"):
        folder = ds.results / ds.dataset_folder.name / f"{name}__nnUNetPlans__3d_fullres"
        (folder / "fold_0").mkdir(parents=True, exist_ok=True)
        shutil.copy(ds.plans_file, folder / "plans.json")
        shutil.copy(ds.dataset_folder / "dataset.json", folder / "dataset.json")
        torch.save({"network_weights": {}, "trainer_name": name, "init_args": {"configuration": "3d_fullres"},
                    "inference_allowed_mirroring_axes": None}, folder / "fold_0" / "checkpoint_final.pth")
    images, organs = base / "images", {}
    images.mkdir()
    for img_path in sorted(ds.images_ts.glob("*_0000.nii.gz")):
        case = img_path.name[: -len("_0000.nii.gz")]
        img = sitk.ReadImage(str(img_path))
        organ = sitk.GetArrayFromImage(sitk.ReadImage(str(ds.labels_ts / f"{case}.nii.gz"))) > 0
        arr = np.full(organ.shape, -1000.0, np.float32)  # clipped to the 0.5 percentile: normalised ~ -2.5
        arr[organ] = ip["percentile_99_5"]  # normalised ~ +2.5: both oracles
        # the decoy (normalised 0: the fine oracle only): as many voxels as the organ, at the far side in y/x
        lo = tc2f.foreground_bbox(organ)
        decoy = np.zeros_like(organ)
        z0 = lo[0][0]
        side = max(2, int(round((organ.sum() / max(1, lo[0][1] - z0)) ** 0.5)))
        y0 = 0 if lo[1][0] > organ.shape[1] / 2 else organ.shape[1] - side
        x0 = 0 if lo[2][0] > organ.shape[2] / 2 else organ.shape[2] - side
        decoy[z0:lo[0][1], y0:y0 + side, x0:x0 + side] = True
        decoy &= ~ndimage.binary_dilation(organ, iterations=2)
        arr[decoy] = ip["mean"]
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(img)
        sitk.WriteImage(out, str(images / img_path.name))
        organs[case] = (organ, decoy)
    o = SimpleNamespace(env=env, images=images, organs=organs, coarse="nnUNetTrainerC2FTestOracleHigh:3d_fullres",
                        fine="nnUNetTrainerC2FTestOracleLow:3d_fullres", out=base / "pred", whole=base / "whole")
    # the pair through the CLI; and the fine oracle alone over the whole volumes through stock nnU-Net's predictor
    cmd = c2f_cmd(ds, o.out, o.coarse, o.fine)
    cmd[cmd.index("-i") + 1] = str(o.images)
    o.proc = run(cmd, o.env)
    run(["nnUNetv2_predict", "-i", str(o.images), "-o", str(o.whole), "-d", str(ds.dataset_id), "-c", "3d_fullres",
         "-tr", o.fine.split(":")[0], "-f", "0", "-device", "cpu", "--disable_tta", "-npp", "1", "-nps", "1"], o.env)
    return o


def test_predict_c2f_box_path_end_to_end(oracle_pair):
    """Through the CLI with a coarse stage known to find the organ: the fine stage runs on the coarse box only, the
    pasted result has the input's geometry, matches the organ, and nothing outside the box is foreground (the
    decoy that the fine model finds outside the box is absent)."""
    import SimpleITK as sitk

    o = oracle_pair
    out, proc = o.out, o.proc
    assert_predictions_match_inputs(out, o.images)
    times = json.loads((out / c2f.TIMES_FILE).read_text())
    assert sorted(times["cases"]) == sorted(o.organs)
    for case, (organ, decoy) in o.organs.items():
        rec = times["cases"][case]
        assert rec["fallback"] is None and "found no foreground" not in proc.stdout
        assert rec["fine_preprocessing"] == "reused the coarse stage's"
        (box,) = rec["boxes"]
        gt_box = tc2f.foreground_bbox(organ)
        assert all(lo <= glo and ghi <= hi for (lo, hi), (glo, ghi) in zip(box, gt_box))  # the organ is inside
        inside = np.zeros(organ.shape, bool)
        inside[tc2f.box_slices(box)] = True
        assert decoy.sum() > 0 and not (decoy & inside).any()  # the decoy is outside the box: a real check
        assert 0 < rec["fine_voxels_fraction"] < 0.6
        seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz")))
        assert not seg[~inside].any()
        fg = seg > 0
        dice = 2 * (fg & organ).sum() / (fg.sum() + organ.sum())
        assert dice > 0.9, (case, dice)  # pasted at the right place
    # the same pair with the fine model over the whole volume (--fallback fine is not taken: coarse found the organ)
    # would find the decoy: shown with the fine oracle alone through stock nnU-Net's predictor
    case, (organ, decoy) = next(iter(o.organs.items()))
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(o.whole / f"{case}.nii.gz")))
    assert (seg[decoy] > 0).mean() > 0.5

