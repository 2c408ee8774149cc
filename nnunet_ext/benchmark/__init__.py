"""The benchmark against stock nnU-Net: model figures (parameters, FLOPs, step time, memory, inference), accuracy
with paired tests, the report, and the ``benchmark`` sub-command."""
