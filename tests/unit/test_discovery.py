"""Trainer names: the shim folder, short schedules by name, suffixes refused by their base."""
import os

import pytest

import nnunet_ext
from nnunet_ext import trainers


def test_shim_folder_holds_only_the_shim():
    files = sorted(f for f in os.listdir(nnunet_ext.EXT_TRAINER_DIR) if f.endswith(".py"))
    assert files == ["nnunet_ext_trainers.py"]


def test_short_schedules_by_name():
    c = trainers.get_trainer("nnUNetTrainerPlainUNet_5epochs")
    assert c is trainers.nnUNetTrainerPlainUNet_5epochs
    assert issubclass(c, trainers.nnUNetTrainerPlainUNet)
    assert c.merged_hparams() == {"num_epochs": 5}
    c = trainers.get_trainer("nnUNetTrainerPlainUNet_1epoch_4iters")
    assert c.merged_hparams() == {"num_epochs": 1, "num_iterations_per_epoch": 4, "num_val_iterations_per_epoch": 1}
    for n in (1, 2, 5, 10, 50, 100):
        assert f"nnUNetTrainerPlainUNet_{n}epoch{'s' if n > 1 else ''}" in trainers.__all__
    for bad in ("nnUNetTrainerPlainUNet_0epochs", "nnUNetTrainerPlainUNet_xyz"):
        with pytest.raises((AttributeError, ValueError)):
            trainers.get_trainer(bad)
    with pytest.raises(AttributeError):
        trainers.get_trainer("nnUNetTrainerPlainUNet_5epochs_10epochs")


def test_suffix_refused_by_its_base_is_no_trainer():
    """A suffix's ``applies_to`` bites: c2f's ``_fine`` on an exported ``...Fine`` trainer (which has the fine stage
    already) is no trainer, with the reason; so is ``_centre`` on a base that has the centre loss; the same suffixes
    on other bases build."""
    from nnunet_ext.trainers import _naming
    from nnunet_ext.trainers.c2f import CentreLossMixin, FineStageMixin

    for bad in ("nnUNetTrainerPlainUNetFine_fine", "nnUNetTrainerResDSNFine_fine10vox_1epoch"):
        with pytest.raises(AttributeError, match="does not apply to nnUNetTrainer"):
            trainers.get_trainer(bad)
    assert issubclass(trainers.get_trainer("nnUNetTrainerResDSN_fine10vox_1epoch"), FineStageMixin)
    assert issubclass(trainers.get_trainer("nnUNetTrainerPlainUNetFine_centre_1epoch"), CentreLossMixin)
    with_centre = type("WithCentre", (CentreLossMixin, trainers.nnUNetTrainerPlainUNet), {})
    base, matched = _naming.parse("WithCentre_centre", {"WithCentre": with_centre})
    with pytest.raises(ValueError, match="suffix 'centre' does not apply to WithCentre"):
        _naming.derive("WithCentre_centre", base, matched, module=__name__)
    # the loss schedules apply to every base, stock nnUNetTrainer included (no applies_to)
    assert [s.applies_to for s in _naming.suffixes() if s.name == "lossschedule"] == [None]
    from nnunet_ext.trainers.loss_schedules import PhaseLossMixin
    assert issubclass(trainers.get_trainer("nnUNetTrainer_phaseloss_1epoch"), PhaseLossMixin)

