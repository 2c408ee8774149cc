#!/bin/bash
# Cross-validation of the ResDSN coarse-to-fine pair beside stock nnU-Net on the synthetic dataset (issue 12's
# measurement; docs/c2f.md "Cross-validation on the synthetic dataset"). Per fold k: coarse and fine ResDSN trained
# on fold k, C2F on fold k's validation cases (nnunet-ext crossval-c2f), stock nnUNetTrainer on fold k (its own
# final validation), the fine model alone over the whole validation volumes (nnUNetv2_predict). Then every row is
# scored by the same code (nnunet-ext benchmark --cv: Dice / HD95 / NSD per class, paired Wilcoxon vs stock) and
# the seconds per case are collected (benchmarks/c2f_cv_times.py). One process at a time, CPU.
#
#   W=/tmp/c2f_cv FOLDS="0 1 2 3 4" OMP_NUM_THREADS=2 bash benchmarks/c2f_crossval.sh  # ~1 h on 2 idle cores
#
# Variables: W work folder (raw/pre/res inside), FOLDS, S the schedule suffix of all three trainers, PATCH the
# patch of the configuration 3d_bench<PATCH> (inherits 3d_fullres: same spacing and preprocessed data; stock and
# ResDSN both use it), DEVICE, TRAIN_ONLY=1 (train the three models of every fold, score nothing). Steps already
# done (a trained fold, a scored fold) are skipped on a rerun.
set -e
W=${W:?set W to a work folder}; FOLDS=${FOLDS:-0 1 2 3 4}; S=${S:-nomirror_20epochs_25iters}
PATCH=${PATCH:-16 32 32}; DEVICE=${DEVICE:-cpu}; HERE=$(cd "$(dirname "$0")" && pwd)
export nnUNet_raw=$W/raw nnUNet_preprocessed=$W/pre nnUNet_results=$W/res nnUNet_compile=f
export nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-0} nnUNet_def_n_proc=${nnUNet_def_n_proc:-1} PYTHONWARNINGS=ignore
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # idle threads sleep (docs/testing.md)
eval "$(nnunet-ext env)"
DS=Dataset996_SyntheticPancreas; D=$nnUNet_results/$DS; P=$nnUNet_preprocessed/$DS
C=3d_bench$(echo $PATCH | tr ' ' x); mkdir -p $W/logs

# 1. data: 10 training cases at size_scale 2 (5 folds of 2 validation cases), nnU-Net's planning, a small patch
[ -d $nnUNet_raw/$DS ] || nnunet-ext make-dataset -o $nnUNet_raw --id 996 --cases 10 --test-cases 0 --size-scale 2
[ -f $P/nnUNetPlans.json ] || nnUNet_n_proc_DA=1 nnUNetv2_plan_and_preprocess -d 996 -c 3d_fullres -np 1 -npfp 1
python - "$P/nnUNetPlans.json" "$C" $PATCH <<'EOF'
# nnU-Net's planner at 3d_fullres' spacing for a "median shape" of the wanted patch (as benchmarks/c2f_speed.py)
import json, os, sys
import numpy as np
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.utilities.json_export import recursive_fix_for_json_export
pf, config, ps = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3:6]]
plans = json.load(open(pf))
if config not in plans["configurations"]:
    full = plans["configurations"]["3d_fullres"]
    os.environ["nnUNet_n_proc_DA"] = "1"
    new = ExperimentPlanner(plans["dataset_name"]).get_plans_for_configuration(
        full["spacing"], ps, full["data_identifier"], float(np.prod(full["median_image_size_in_voxels"]) * 10), {})
    entry = {"inherits_from": "3d_fullres", "patch_size": new["patch_size"], "batch_size": 2,  # nnU-Net's default
             "architecture": new["architecture"]}
    recursive_fix_for_json_export(entry)
    plans["configurations"][config] = entry
    json.dump(plans, open(pf, "w"), indent=2)
print(config, plans["configurations"][config]["patch_size"])
EOF

train() {  # trainer fold: nnU-Net's training + its final validation (skipped by the _fine trainer, see docs/c2f.md)
  local M=$D/${1}__nnUNetPlans__$C/fold_$2
  if [ -f $M/checkpoint_final.pth ] && { [ -f $M/validation/summary.json ] || [[ $1 == *Fine* ]]; }; then return; fi
  echo "$(date -u +%T) train $1 fold $2"
  nnUNetv2_train 996 $C $2 -tr $1 -device $DEVICE > $W/logs/train_${1}_f$2.log 2>&1
}
C2F=$D/C2F__nnUNetTrainerResDSN_${S}__${C}__nnUNetTrainerResDSNFine_${S}__$C
FO=$D/FineOnly__nnUNetTrainerResDSNFine_${S}__$C
for f in $FOLDS; do
  train nnUNetTrainerResDSN_$S $f
  train nnUNetTrainerResDSNFine_$S $f
  if [ -n "$TRAIN_ONLY" ]; then train nnUNetTrainer_$S $f; continue; fi
  # 2. C2F: coarse fold k + fine fold k on fold k's validation cases (coarse step 0.9, fine step 0.5)
  [ -f $C2F/fold_$f/validation/summary.json ] || { echo "$(date -u +%T) crossval-c2f fold $f";
    nnunet-ext crossval-c2f -d 996 --coarse nnUNetTrainerResDSN_$S:$C --fine nnUNetTrainerResDSNFine_$S:$C \
      -f $f -device $DEVICE --disable_tta > $W/logs/c2f_f$f.log 2>&1; }
  train nnUNetTrainer_$S $f
  # 3. fine only: the fine model over the whole validation volumes (what the _fine trainer's validation skips)
  if [ ! -f $FO/fold_$f/validation/fine_only_times.json ]; then
    echo "$(date -u +%T) fine only fold $f"
    M=$D/nnUNetTrainerResDSNFine_${S}__nnUNetPlans__$C; mkdir -p $FO && cp $M/plans.json $M/dataset.json $FO/
    rm -rf $W/val$f; mkdir -p $W/val$f
    for c in $(python -c "import json;print(' '.join(json.load(open('$P/splits_final.json'))[$f]['val']))"); do
      ln -sf $nnUNet_raw/$DS/imagesTr/${c}_0000.nii.gz $W/val$f/; done
    t0=$(date +%s.%N)
    nnUNetv2_predict -i $W/val$f -o $FO/fold_$f/validation -d 996 -c $C -f $f -device $DEVICE --disable_tta \
      -tr nnUNetTrainerResDSNFine_$S -npp 1 -nps 1 > $W/logs/fineonly_f$f.log 2>&1
    python -c "import json; json.dump({'what': 'nnUNetv2_predict wall time of the fold (model load, preprocessing, \
export included)', 'cases': $(ls $W/val$f | wc -l), 'wall_s': $(date +%s.%N) - $t0}, \
open('$FO/fold_$f/validation/fine_only_times.json', 'w'), indent=2)"
  fi
done

[ -z "$TRAIN_ONLY" ] || exit 0
# 4. the same scoring for every row (nnunet_ext/evaluation/summary.py), paired Wilcoxon + bootstrap CI vs stock,
# once with no post-processing and once with the largest component per class, applied alike to every row
for PP in none largest; do
  nnunet-ext benchmark --skip-models --cv -d 996 -c $C --folds $FOLDS --reference nnUNetTrainer_$S \
      --postprocessing $PP --nsd-convention ${NSD:-voxel} --out $W/bench_$PP \
      -tr nnUNetTrainer_$S nnUNetTrainerResDSN_$S C2F=$C2F FineOnly=$FO
done
python $HERE/c2f_cv_times.py --c2f $C2F --validation Coarse=$D/nnUNetTrainerResDSN_${S}__nnUNetPlans__$C \
    Stock=$D/nnUNetTrainer_${S}__nnUNetPlans__$C --fine-only $FO --folds $FOLDS --json $W/bench_none/c2f_cv_times.json
