"""Evaluation beside nnU-Net's Dice: the metric table (one definition per metric), surface distances (HD95, NSD),
per-case and summary files, and the ``evaluate`` sub-command."""
