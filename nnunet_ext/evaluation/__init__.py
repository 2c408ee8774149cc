"""Evaluation beside nnU-Net's Dice: the metric table (:mod:`.table`, one definition per metric and the empty-mask
rules), surface distances (:mod:`.surface`: HD95, NSD via MONAI, voxel or surfel convention), the post-processing rule
applied before scoring (:mod:`.postprocessing`), the metrics of one structure and one case
(:mod:`.case`), folder and trained-model summaries (:mod:`.summary`) and the ``evaluate`` sub-command (:mod:`.cli`)."""
