"""Seconds per case of the coarse-to-fine cross-validation (docs/c2f.md), and the C2F / coarse-only time ratio,
from what the runs left behind (no model is run here):

* **C2F** (``nnunet-ext crossval-c2f``): ``fold_k/validation/c2f_times.json`` of the pair's results folder, per case
  ``coarse_s`` (the coarse stage: nnU-Net's preprocessing, sliding window at ``--coarse-step``, export to the input's
  geometry) and ``total_s`` (+ box, the fine stage over the box at ``-step_size``, paste). The coarse stage *is* the
  coarse-only prediction, timed in the same run on the same case, so ``total_s / coarse_s`` is the C2F /
  coarse-only time ratio (reading the image and writing the output, the same for both, are in neither);
* **nnU-Net final validation** of a trainer (coarse only, stock): the time stamps of ``predicting CASE`` in
  ``fold_k/training_log_*.txt``, from one case to the next (the last case of a fold has no successor and is left
  out). That is the sliding window on the preprocessed case at nnU-Net's tile step 0.5 (preprocessing not included;
  the export runs in a background worker and overlaps the next case);
* **fine only** (``nnUNetv2_predict`` of the fine model over whole validation volumes): ``fine_only_times.json``
  ``{"cases", "wall_s"}`` per fold written by the command that ran it (model loading included).

Example (docs/c2f.md)::

    python benchmarks/c2f_cv_times.py --c2f $R/C2F__... --validation Coarse=$R/nnUNetTrainerResDSN_... \\
        Stock=$R/nnUNetTrainer_... --fine-only $R/FineOnly__... --folds 0 1 --json times.json
"""
import sys

from nnunet_ext.benchmark.c2f_cv_times import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
