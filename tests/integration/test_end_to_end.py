"""End to end with the stock nnU-Net console scripts themselves (elsewhere tests.helpers.run calls their entry-point
functions): plan_and_preprocess (fixture), nnUNetv2_train with one of our short-schedule trainers on the CPU,
nnUNetv2_predict, nnUNetv2_evaluate_folder."""
import json

import pytest

from tests.helpers import PLAIN_3D, assert_predictions_match_inputs, predict, run, shared


@shared("nnunet_dataset", "plain_unet_3d")
def stock_e2e_run(ds, fold_dir, tmp):
    """``nnUNetv2_predict`` of the test images with conftest's ``plain_unet_3d`` model (trained by the stock
    ``nnUNetv2_train``), then ``nnUNetv2_evaluate_folder``. Without test-time mirroring: nnU-Net's mirrored sliding
    window ran with this model in its final validation (8 mirrorings of each 3D tile: 2/3 of the CPU time here)."""
    out = predict(ds, PLAIN_3D, "3d_fullres", tmp / "pred_e2e", extra=["--disable_tta"], console=True)
    run(["nnUNetv2_evaluate_folder", str(ds.labels_ts), str(out), "-djfile", str(ds.dataset_folder / "dataset.json"),
         "-pfile", str(ds.plans_file)], ds.env, console=True)
    return out


@pytest.mark.xdist_group("c2f_pair")
def test_stock_commands_train_predict_evaluate(nnunet_dataset, plain_unet_3d, stock_e2e_run):
    ds, fold_dir, out = nnunet_dataset, plain_unet_3d, stock_e2e_run
    assert (fold_dir / "checkpoint_final.pth").is_file()
    assert (fold_dir / "validation" / "summary.json").is_file()  # nnU-Net's own final validation ran
    assert_predictions_match_inputs(out, ds.images_ts)
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == len(list(ds.images_ts.glob("*_0000.nii.gz")))
    assert set(summary["mean"]) == {"1", "2"}


def test_pass_through_finds_our_trainer_and_reports_unknown(nnunet_dataset):
    ds = nnunet_dataset
    env = {k: v for k, v in ds.env.items() if k != "nnUNet_extTrainer"}  # pass-through registers it itself
    proc = run(["nnunet-ext", "train", str(ds.dataset_id), "2d", "0", "-tr", "nnUNetTrainerNoSuchThing",
                "-device", "cpu"], env, check=False)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "nnUNetTrainerNoSuchThing" in last and "nnUNetTrainerPlainUNet" in last
