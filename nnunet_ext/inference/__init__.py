"""Inference beyond ``nnUNetv2_predict``'s defaults: the slab-wise 2d predictor (``predict-slices``)."""
