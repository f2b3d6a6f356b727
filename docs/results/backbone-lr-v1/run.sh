#!/usr/bin/env bash
# Discriminative fine-tuning (diffrep finetune --optim.backbone_lr_ratio R: the backbone at R x lr, the fresh head at
# lr) against the RepFusion table's fine-tuning (R = 1, whose rows are docs/results/lpft-v1's "random" head) at 1%
# labels, 3 seeds, for random and distilled students of the v1 teacher. Resumable: a finished run is skipped. The
# dense resnet18 student comes from docs/results/repfusion-combos-v1 (its RUNS folder).
#   OMP_NUM_THREADS=1 docs/results/backbone-lr-v1/run.sh [RUNS] [COMBOS_RUNS]; python docs/results/backbone-lr-v1/summarise.py [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${1:-/var/tmp/diffrep-runs/backbone-lr}
COMBOS=${2:-/var/tmp/diffrep-runs/rf-combos-v1}/distill
FT="--data.labels 0.01 --optim.batch_size 64 --optim.lr 0.05 --optim.warmup_steps 50 --trainer.max_steps 500"
ROWS=("r18-random|--student.arch resnet18 --student.stem imagenet"
      "r18-dense2|--init $COMBOS/policy_5_epochs_dense_layer2/labels0.01-seed0/student.safetensors"
      "mb-random|--student.arch mobilenet_v2 --student.stem imagenet"
      "mb-shipped|--init src/diffrep/teachers/fashion-mnist/student/student.safetensors")
for ratio in ${RATIOS:-0.1}; do
  for row in "${ROWS[@]}"; do
    for seed in ${SEEDS:-0 1 2}; do
      out=$RUNS/ratio$ratio/${row%%|*}/seed$seed
      [ -f "$out/metrics.json" ] && continue
      # shellcheck disable=SC2086
      .venv/bin/diffrep finetune ${row#*|} $FT --optim.backbone_lr_ratio "$ratio" --seed "$seed" --data.seed "$seed" \
        --overwrite --trainer.progress_bar false --out "$out" | tail -1
    done
  done
done
