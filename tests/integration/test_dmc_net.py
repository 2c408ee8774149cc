"""DMC-Net end to end: the stock nnUNetv2_train / nnUNetv2_predict with nnUNetTrainerDMCNet in 2d and 3d_fullres (CPU,
on the shared small plans)."""
from tests.helpers import assert_predictions_match_inputs, predict, shared, shared_small_plans, train


# the dataset's own plans are too heavy for DMC-Net on 2 CPU cores (3d_fullres: patch 24x80x80, 320 features, over
# 10 minutes per epoch; 2d: 5 stages up to 512 features, ~5x stock's FLOPs), so both run on a copy of the plans with
# a small patch and narrow features (same spacing, same preprocessed data: small_plans)
def _dmc_train_predict(ds, tmp, configuration):
    """Stock nnUNetv2_train (1 epoch of 4 iterations, CPU) then stock nnUNetv2_predict (without test-time mirroring,
    to keep the CPU run short) with nnUNetTrainerDMCNet."""
    trainer = "nnUNetTrainerDMCNet_nomirror_1epoch_4iters"  # the final validation without mirroring too
    plans = shared_small_plans(ds, configuration)
    out = train(ds, trainer, configuration, plans=plans)
    pred = predict(ds, trainer, configuration, tmp / "pred", extra=["--disable_tta"], plans=plans)
    return out, pred


@shared("nnunet_dataset")
def dmc_e2e_2d(ds, tmp):
    return _dmc_train_predict(ds, tmp, "2d")


@shared("nnunet_dataset")
def dmc_e2e_3d(ds, tmp):
    return _dmc_train_predict(ds, tmp, "3d_fullres")


def _check_dmc_end_to_end(ds, run):
    out, pred = run
    assert any(out.glob("training_log*.txt")) and (out / "validation" / "summary.json").is_file()
    assert_predictions_match_inputs(pred, ds.images_ts)  # predictions match the inputs' geometry and labels


def test_end_to_end_train_and_predict_2d(nnunet_dataset, dmc_e2e_2d):
    _check_dmc_end_to_end(nnunet_dataset, dmc_e2e_2d)


def test_end_to_end_train_and_predict_3d_fullres(nnunet_dataset, dmc_e2e_3d):
    _check_dmc_end_to_end(nnunet_dataset, dmc_e2e_3d)

