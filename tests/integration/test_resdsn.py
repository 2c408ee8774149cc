"""ResDSN end to end: the stock nnUNetv2_train / nnUNetv2_predict with ResDSN (CPU, 3d_fullres, on the shared small
plans)."""
from __future__ import annotations

import torch

from tests.helpers import assert_predictions_match_inputs, predict, shared, shared_small_plans, train


# --------------------------------------------------------------------------------------------------- end to end
@shared("nnunet_dataset")
def resdsn_e2e_run(ds, tmp):
    """Stock ``nnUNetv2_train`` then ``nnUNetv2_predict`` with ResDSN, 3d_fullres on the shared small plans (conftest's
    SMALL_3D: ResDSN adapts to the plans' stages). _nomirror: no test-time mirroring in the final validation and the
    prediction (nnU-Net's, network-independent; test_end_to_end keeps it): 8x fewer 3D forward passes."""
    trainer, plans = "nnUNetTrainerResDSN_nomirror_1epoch_4iters", shared_small_plans(ds, "3d_fullres")
    fold_dir = train(ds, trainer, "3d_fullres", plans=plans)
    return fold_dir, predict(ds, trainer, "3d_fullres", tmp / "pred", plans=plans)


def test_end_to_end_resdsn_3d_fullres(nnunet_dataset, resdsn_e2e_run):
    fold_dir, out = resdsn_e2e_run
    ckpt = torch.load(fold_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert any(k.startswith("decoder.transpconvs.") for k in ckpt["network_weights"])  # it trained a ResDSN
    assert ckpt["inference_allowed_mirroring_axes"] is None  # _nomirror reached nnU-Net's predictor
    assert_predictions_match_inputs(out, nnunet_dataset.images_ts)

