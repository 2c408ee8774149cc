"""Coarse-to-fine inference (ResDSN C2F, two-stage U-Net): box rule use, stages, the coarse configuration, the pair's
cross-validation and their sub-commands (``predict-c2f``, ``crossval-c2f``, ``make-coarse-config``)."""
