#!/usr/bin/env bash
# One-command GPU check of nnunet-ext's memory-aware planner (issue 11, build 6): every architecture on the
# pancreas-like plans `nnunet-ext plan` makes at 8 and 24 GB, trained with the trainer's own AMP train_step;
# writes docs/gpu.md (step time, max_memory_allocated vs the planner's estimate and the target, TFLOP/s vs stock).
# Runs in at most 8 minutes (no measurement starts after 7; the rest is listed as not measured).
#   bash benchmarks/gpu_check.sh                    # all architectures, 3d_fullres, targets 8 and 24 GB
#   bash benchmarks/gpu_check.sh --archs dlkunet_s monet --targets 24
# Needs the package installed (pip install -e .) in the python on PATH (or PYTHON=/path/to/python).
set -euo pipefail
cd "$(dirname "$0")/.."
export nnUNet_compile="${nnUNet_compile:-f}" nnUNet_n_proc_DA="${nnUNet_n_proc_DA:-0}"
exec timeout 480 "${PYTHON:-python}" benchmarks/gpu_check.py --out docs/gpu.md --time-budget 420 "$@"
