"""Bad input through the stock ``nnUNetv2_train`` console script: nnU-Net's own 'not found', no frame of ours."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_ext.benchmark.bad_inputs import DS, make_world


@pytest.fixture
def world(tmp_path, monkeypatch):
    """The fake nnU-Net world of tests/unit/test_inputs.py (:func:`make_world`)."""
    return make_world(tmp_path, monkeypatch.setenv)


@pytest.mark.slow
def test_stock_train_with_0epochs_is_nnunets_not_found(world):
    """Through the stock command: nnU-Net's own 'Could not find requested nnunet trainer', no frame of ours."""
    exe = Path(sys.executable).parent / "nnUNetv2_train"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([str(exe), DS, "3d_fullres", "0", "-tr", "nnUNetTrainerMoNet_0epochs", "-device", "cpu"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Could not find requested nnunet trainer nnUNetTrainerMoNet_0epochs" in proc.stderr
    assert "_naming.py" not in proc.stderr and "trainers/__init__.py" not in proc.stderr, proc.stderr[-2000:]

