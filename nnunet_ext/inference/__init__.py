"""Inference beyond ``nnUNetv2_predict``'s defaults: the slab-wise 2d predictor (``predict-slices``) and the
``predict`` pass-through's driver (any input layout, DICOM SEG, statistics, previews, progress: :mod:`.predict`)."""
