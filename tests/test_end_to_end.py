"""End to end with the stock nnU-Net commands: plan_and_preprocess (fixture), nnUNetv2_train with one of our
short-schedule trainers on the CPU, nnUNetv2_predict, nnUNetv2_evaluate_folder."""
import json

from conftest import assert_predictions_match_inputs, predict, run, train

TRAINER = "nnUNetTrainerPlainUNet_1epoch_4iters"


def test_stock_commands_train_predict_evaluate(nnunet_dataset):
    ds = nnunet_dataset
    fold_dir = train(ds, TRAINER, "3d_fullres", reuse=True)  # test_c2f's coarse model when the whole suite runs
    assert (fold_dir / "validation" / "summary.json").is_file()  # nnU-Net's own final validation ran
    out = predict(ds, TRAINER, "3d_fullres", ds.base / "pred_e2e")
    assert_predictions_match_inputs(out, ds.images_ts)
    run(["nnUNetv2_evaluate_folder", str(ds.labels_ts), str(out), "-djfile", str(ds.dataset_folder / "dataset.json"),
         "-pfile", str(ds.plans_file)], ds.env)
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
