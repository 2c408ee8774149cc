"""DLKUNet end to end: the stock nnUNetv2_train / nnUNetv2_predict with DLKUNet-S and the dynamic loss schedule (CPU,
2d, on the shared small plans)."""
from nnunet_ext.trainers.loss_schedules import dynamic_weights, scaled_weights
from tests.helpers import assert_predictions_match_inputs, predict, shared, shared_small_plans, train


# --------------------------------------------------------------------------------------------- end to end
@shared("nnunet_dataset")
def dlkunet_e2e_run(ds, tmp):
    """Stock nnUNetv2_train + nnUNetv2_predict (CPU, 1 epoch of 4 iterations) with DLKUNet-S and the dynamic loss.
    _nomirror: the final validation without test-time mirroring; the prediction with --disable_tta (nnU-Net's, not
    ours): 4x fewer forward passes of a network whose depth-wise and dilated convolutions are slow on a CPU."""
    trainer, plans = "nnUNetTrainerDLKUNetS_dynloss_nomirror_1epoch_4iters", shared_small_plans(ds, "2d")
    fold_dir = train(ds, trainer, "2d", plans=plans)
    return fold_dir, predict(ds, trainer, "2d", tmp / "pred", extra=["--disable_tta"], plans=plans)


def test_train_predict_2d_dlkunet_s_dynloss(nnunet_dataset, dlkunet_e2e_run):
    fold_dir, out = dlkunet_e2e_run
    log = "\n".join(p.read_text() for p in fold_dir.glob("training_log_*.txt"))
    a, b = scaled_weights(dynamic_weights(0, 1))
    assert f"loss schedule dynloss: alpha (Dice) = {a:.4f}, beta (CE) = {b:.4f}" in log
    assert_predictions_match_inputs(out, nnunet_dataset.images_ts)

