"""``nnunet-ext grid``: the benchmark grid (trainers x folds x configurations) as jobs on SLURM or locally (submitit)."""
