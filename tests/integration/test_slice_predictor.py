"""``nnunet-ext predict-slices`` with a trained MoNet: nnUNetv2_predict's result, one-line errors on bad input."""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_predictions_match_inputs, run, shared, spec_of


@shared("nnunet_dataset", "monet_2d_run")
def predict_slices_run(ds, monet, tmp):
    """``nnunet-ext predict-slices`` of the test images with conftest's MoNet (3 slices per forward)."""
    fold_dir, _ = monet
    out = tmp / "ours"
    run(["nnunet-ext", "predict-slices", "-i", str(ds.images_ts), "-o", str(out), "-d", str(ds.dataset_id), "-c",
         "2d", "-tr", spec_of(fold_dir).split(":")[0], "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1",
         "--save_probabilities", "-slices_per_forward", "3"], ds.env)
    return out


@pytest.mark.xdist_group("monet_2d")
def test_command_equals_nnunetv2_predict_for_a_trained_monet(nnunet_dataset, monet_2d_run, predict_slices_run):
    """predict-slices gives nnUNetv2_predict's result (--save_probabilities both: conftest's monet_2d_run)."""
    import SimpleITK as sitk

    ds, (_, ref), out = nnunet_dataset, monet_2d_run, predict_slices_run
    assert_predictions_match_inputs(out, ds.images_ts)
    cases = sorted(p.name for p in ref.glob("*.nii.gz"))
    assert cases and cases == sorted(p.name for p in out.glob("*.nii.gz"))
    for name in cases:
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(ref / name)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(out / name)))
        assert (a != b).mean() < 1e-3, name  # argmax ties within fp16 rounding only
        pa = np.load(ref / name.replace(".nii.gz", ".npz"))["probabilities"]
        pb = np.load(out / name.replace(".nii.gz", ".npz"))["probabilities"]
        assert pa.shape == pb.shape and np.abs(pa - pb).max() < 5e-3, name


def test_command_bad_input_one_line_exit_2_nothing_written(nnunet_dataset, tmp_path, monkeypatch, capsys):
    """In-process through the CLI's ``main`` (what the console script calls), so that six refusals do not pay six
    imports of torch and nnU-Net; test_command_equals_nnunetv2_predict_for_a_trained_monet runs the console script."""
    from nnunet_ext.cli import main

    ds = nnunet_dataset
    for k, v in ds.env.items():
        if k.startswith("nnUNet"):
            monkeypatch.setenv(k, v)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for extra, expect in ((["-batch_mb", "0"], "-batch_mb"), (["-slices_per_forward", "0"], "-slices_per_forward"),
                          (["-step_size", "2"], "-step_size"), (["-tr", "nnUNetTrainerNoSuch"], "nnUNetTrainerNoSuch"),
                          (["-i", str(tmp_path / "no_such_folder")], "no_such_folder"),
                          (["-o", str(blocker / "out")], "a_file")):  # unwritable even for root: below a file
        out = tmp_path / "never"
        args = {"-i": str(ds.images_ts), "-o": str(out), "-d": str(ds.dataset_id), "-c": "2d", "-f": "0",
                "-device": "cpu"}
        args.update(dict(zip(extra[::2], extra[1::2])))
        rc = main(["predict-slices", *[x for kv in args.items() for x in kv]])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert rc == 2, (extra, err[-2000:])
        assert len(lines) == 1 and lines[0].startswith("nnunet-ext predict-slices: error:") and expect in lines[0], \
            (extra, err)
        assert not out.exists() and blocker.read_text() == "x"

