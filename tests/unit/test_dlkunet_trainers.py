"""DLKUNet's trainers (seed paper dlkunet.txt): the loss schedules of Sec. 4.4 (eqs. 10-13) with nnU-Net's deep
supervision, Sec. 4.3's learning-rate recipe, the paper's depth on plans (trimmed plans, a plans mismatch is one line
and exit status 2), the lookup of trainers built by name."""
import math
import re

import numpy as np
import pytest
import torch

from nnunet_ext.trainers import get_trainer
from nnunet_ext.trainers.loss_schedules import (DynamicLossMixin, PhaseLossMixin, dynamic_weights,
                                                phase_weights, scaled_weights)


# --------------------------------------------------------------------------------------------- loss schedules
def _eq12_13(x, N, A_=0.3, B_=0.7, k=None):
    """eqs. 12-13 written out independently (x: 1-based epoch, x0 = N / 2, k = 20 / N)."""
    k = 20 / N if k is None else k
    s = 1 / (1 + np.exp(-k * (x - 0.5 * N)))
    return A_ + (1 - A_) * (1 - s), 1 + (B_ - 1) * (1 - s)


@pytest.mark.parametrize("N", [400, 1000, 10, 1])
def test_phase_weights_eq11(N):
    for epoch in range(N):  # nnU-Net's current_epoch is 0-based; the paper's epochs are 1-based
        x = epoch + 1
        expected = (0.6, 0.4) if x <= N / 2 else (0.7, 0.3)
        assert phase_weights(epoch, N) == expected
    if N == 400:  # eq. 11 literally: [1, 200] and (200, 400]
        assert phase_weights(199, 400) == (0.6, 0.4) and phase_weights(200, 400) == (0.7, 0.3)


@pytest.mark.parametrize("N", [400, 200, 7])
def test_dynamic_weights_eq12_13(N):
    for epoch in sorted({0, 1, N // 4, N // 2 - 1, N // 2, N - 1}):
        a, b = dynamic_weights(epoch, N)
        ea, eb = _eq12_13(epoch + 1, N)
        assert math.isclose(a, ea, abs_tol=1e-12) and math.isclose(b, eb, abs_tol=1e-12)
    # midpoint x = x0: sigma = 1/2
    if N % 2 == 0:
        a, b = dynamic_weights(N // 2 - 1, N)
        assert math.isclose(a, 0.65) and math.isclose(b, 0.85)
    # endpoints: alpha 1 -> A, beta B -> 1, monotone
    a0, b0 = dynamic_weights(0, N)
    a1, b1 = dynamic_weights(N - 1, N)
    if N >= 200:
        assert a0 > 0.999 and abs(b0 - 0.7) < 1e-3 and a1 < 0.301 and b1 > 0.999
    alphas = [dynamic_weights(e, N)[0] for e in range(N)]
    assert all(x > y for x, y in zip(alphas, alphas[1:]))


def test_dynamic_k_matches_public_script_at_200_epochs():
    # k = 20 / num_epochs -> 0.1 at 200 epochs (the authors' script), 0.05 at the paper's 400
    a, b = dynamic_weights(149, 200)
    ea, eb = _eq12_13(150, 200, k=0.1)
    assert math.isclose(a, ea) and math.isclose(b, eb)
    a, b = dynamic_weights(299, 400)
    ea, eb = _eq12_13(300, 400, k=0.05)
    assert math.isclose(a, ea) and math.isclose(b, eb)


class _StandInTrainer:
    """The two methods the mixins override, as nnU-Net's trainer has them (loss built like nnUNetTrainer._build_loss
    with deep supervision: DC_and_CE_loss inside DeepSupervisionWrapper with nnU-Net's scale weights)."""

    def __init__(self, num_epochs, n_scales=3):
        self.num_epochs, self.current_epoch, self.n_scales, self.log = num_epochs, 0, n_scales, []

    def _build_loss(self):
        from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
        from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
        from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
        loss = DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                              weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
        w = np.array([1 / 2 ** i for i in range(self.n_scales)])
        w[-1] = 0
        self.ds_weights = w / w.sum()
        return DeepSupervisionWrapper(loss, self.ds_weights)

    def on_train_epoch_start(self):
        self.log.append(f"epoch {self.current_epoch}")

    def print_to_log_file(self, *args):
        self.log.append(" ".join(str(a) for a in args))


@pytest.mark.parametrize("mixin,fn", [(PhaseLossMixin, phase_weights), (DynamicLossMixin, dynamic_weights)])
def test_schedule_applies_to_every_deep_supervision_scale(mixin, fn):
    N = 10
    trainer = type("T", (mixin, _StandInTrainer), {})(N)
    loss = trainer._build_loss()
    inner = loss.loss
    torch.manual_seed(0)
    outs = [torch.randn(2, 3, 16 // 2 ** i, 16 // 2 ** i) for i in range(3)]
    tgts = [torch.randint(0, 3, (2, 1, 16 // 2 ** i, 16 // 2 ** i)).float() for i in range(3)]
    for epoch in (0, 4, 5, 9):
        trainer.current_epoch = epoch
        trainer.on_train_epoch_start()
        pa, pb = fn(epoch, N)
        a, b = scaled_weights((pa, pb))  # the paper's ratio at nnU-Net's total Dice + CE weight of 2
        assert math.isclose(a + b, 2.0) and math.isclose(a / b, pa / pb)
        assert (inner.weight_dice, inner.weight_ce) == (a, b)
        assert trainer.log[-2] == f"epoch {epoch}"  # nnU-Net's own epoch start still runs
        assert re.search(rf"alpha \(Dice\) = {a:.4f}, beta \(CE\) = {b:.4f}", trainer.log[-1])
        expected = sum(w * (a * inner.dc(o, t) + b * inner.ce(o, t[:, 0]))
                       for w, o, t in zip(trainer.ds_weights, outs, tgts) if w != 0)
        assert torch.allclose(loss(outs, tgts), expected)
    assert trainer.log and phase_weights(0, N) != phase_weights(9, N)


def test_scaled_weights_and_raw_switch():
    assert scaled_weights(phase_weights(0, 400)) == pytest.approx((1.2, 0.8))
    assert scaled_weights(phase_weights(399, 400)) == pytest.approx((1.4, 0.6))
    a0, b0 = scaled_weights(dynamic_weights(0, 400))
    a1, b1 = scaled_weights(dynamic_weights(399, 400))
    assert a0 > b0 and a1 < b1 and math.isclose(a1 + b1, 2.0)  # eqs. 12-13's direction: Dice down, CE up
    with pytest.raises(ValueError, match="positive"):
        scaled_weights((0.0, 0.0))
    raw = type("T", (PhaseLossMixin, _StandInTrainer), {"loss_weight_total": None})(10)
    raw._build_loss()
    assert (raw._scheduled_loss.weight_dice, raw._scheduled_loss.weight_ce) == phase_weights(0, 10)


def test_schedule_suffix_on_any_trainer():
    for name, mixin in [("nnUNetTrainerDLKUNetM_phaseloss", PhaseLossMixin),
                        ("nnUNetTrainerPlainUNet_dynloss_5epochs", DynamicLossMixin),
                        ("nnUNetTrainerDLKUNetS_dynloss_1epoch_4iters", DynamicLossMixin)]:
        cls = get_trainer(name)
        assert cls.__mro__[1] is mixin and cls is get_trainer(name)
    assert get_trainer("nnUNetTrainerDLKUNetS_dynloss_1epoch_4iters").merged_hparams() == \
        {"num_epochs": 1, "num_iterations_per_epoch": 4, "num_val_iterations_per_epoch": 1}
    assert get_trainer("nnUNetTrainerDLKUNetS_dynloss_1epoch_4iters").arch == "dlkunet_s"
    # nnU-Net's own lookup finds such a name as this very class: test_discovery's stock-lookup sample
    with pytest.raises(AttributeError):
        get_trainer("nnUNetTrainerDLKUNetS_phaseloss_dynloss")


# --------------------------------------------------------------------------------------------- the paper's depth
def test_paper_trainers_trim_the_plans_and_build_the_paper_network(tmp_path, monkeypatch):
    """The trainer is given the plans' first 3 / 4 / 5 stages: nnU-Net's deep-supervision scales (from the plans'
    strides) and the network's outputs agree; the _nnUNetWidth trainers keep every stage."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_ext.plans.synth import explicit_plans

    plans, dataset_json, conf = explicit_plans((40, 224, 224), 2, spacing=(2.5, 0.8, 0.8))
    plans["continue_training"] = False  # nnU-Net's get_trainer_from_args adds it
    monkeypatch.setenv("nnUNet_results", str(tmp_path))  # nnU-Net's trainer creates its output folder
    stages = plans["configurations"][conf]["architecture"]["arch_kwargs"]["n_stages"]
    for name, n in (("nnUNetTrainerDLKUNetS", 3), ("nnUNetTrainerDLKUNetMPaper", 4), ("nnUNetTrainerDLKUNetLLKA1", 5),
                    ("nnUNetTrainerDLKUNetL_nnUNetWidth", stages)):
        cls = get_trainer(name)
        trainer = cls(dict(plans), conf, 0, dataset_json, torch.device("cpu"))
        cm = trainer.configuration_manager
        assert len(cm.pool_op_kernel_sizes) == n and len(trainer._get_deep_supervision_scales()) == n - 1
        with torch.device("meta"):
            net = cls.build_network_architecture(PlansManager(plans), PlansManager(plans).get_configuration(conf), 1,
                                                 2, True)
        assert len(net.encoder.stages) == n and len(net.decoder.stages) == n - 1


@pytest.mark.parametrize("name,depth", [("nnUNetTrainerDLKUNetS", 3), ("nnUNetTrainerDLKUNetM", 4),
                                        ("nnUNetTrainerDLKUNetLPaper", 5), ("nnUNetTrainerDLKUNetL7DW", 5)])
def test_plans_shallower_than_the_paper_stop_with_one_line_exit_2(name, depth, monkeypatch, capsys):
    """Before nnU-Net's trainer is initialised (so before it writes anything): one line on stderr, exit status 2."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_ext.plans.synth import explicit_plans
    from nnunet_ext.plans.fit import PlansRefused as PlansDepthError

    initialised = []
    monkeypatch.setattr(nnUNetTrainer, "__init__", lambda self, *a, **k: initialised.append(a))
    patch = {3: (8, 8), 4: (16, 16), 5: (32, 32)}[depth]  # nnU-Net plans depth - 1 stages for these
    plans, dataset_json, conf = explicit_plans(patch, 2)
    assert plans["configurations"][conf]["architecture"]["arch_kwargs"]["n_stages"] == depth - 1
    with pytest.raises(PlansDepthError) as e:
        get_trainer(name)(plans, conf, 0, dataset_json, torch.device("cpu"))
    assert e.value.code == 2 and "\n" not in str(e.value)
    assert f"has {depth - 1}" in str(e.value) and "_nnUNetWidth" in str(e.value)
    assert capsys.readouterr().err.strip() == str(e.value) and not initialised


# --------------------------------------------------------------------------------------------- Sec. 4.3's recipe
def test_paper_recipe_adam_and_step_lr():
    """Adam, LR 1e-3, weight decay 1e-5, LR x0.1 every 20 epochs, 1e-5 from epoch 200 (0-based epochs), driven as
    nnU-Net drives its scheduler (``lr_scheduler.step(current_epoch)`` at every epoch start)."""
    from types import SimpleNamespace

    from nnunet_ext.trainers.dlkunet import paper_lr

    for v in "SML":
        cls = get_trainer(f"nnUNetTrainerDLKUNet{v}Paper")
        assert cls.merged_hparams() == {"initial_lr": 1e-3, "weight_decay": 1e-5, "num_epochs": 400}
        assert cls.arch == f"dlkunet_{v.lower()}"
    stand_in = SimpleNamespace(network=torch.nn.Linear(2, 2), initial_lr=1e-3, weight_decay=1e-5)
    optimizer, scheduler = get_trainer("nnUNetTrainerDLKUNetSPaper").configure_optimizers(stand_in)
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["weight_decay"] == 1e-5
    expected = {0: 1e-3, 19: 1e-3, 20: 1e-4, 39: 1e-4, 40: 1e-5, 199: 1e-12, 200: 1e-5, 399: 1e-5}
    for epoch, lr in expected.items():
        scheduler.step(epoch)
        assert math.isclose(optimizer.param_groups[0]["lr"], lr, rel_tol=1e-9), epoch
        assert math.isclose(paper_lr(epoch), lr, rel_tol=1e-9)
        assert scheduler.get_last_lr() == [optimizer.param_groups[0]["lr"]]
