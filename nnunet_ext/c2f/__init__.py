"""Coarse-to-fine inference (ResDSN C2F, two-stage U-Net): the modes and their box rules (``modes``), mask
operations (``masks``), the two models (``models``), the stages on nnU-Net's predictor (``stages``), the pipeline
(``pipeline``), the coarse configuration (``coarse_config``), the pair's cross-validation (``crossval``) and their
sub-commands (``predict-c2f``: ``cli``; ``crossval-c2f``; ``make-coarse-config``)."""
