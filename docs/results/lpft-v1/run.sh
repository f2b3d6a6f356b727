#!/usr/bin/env bash
# LP-FT (diffrep finetune --head_init probe) against the RepFusion table's fine-tuning (--head_init random) at 1%
# labels, 3 seeds: random and distilled resnet18 and mobilenet_v2 students of the v1 teacher. Resumable: a finished
# run is skipped. The two dense resnet18 students come from docs/results/repfusion-combos-v1 (its RUNS folder).
#   OMP_NUM_THREADS=1 docs/results/lpft-v1/run.sh [RUNS] [COMBOS_RUNS]; python docs/results/lpft-v1/summarise.py [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${1:-/var/tmp/diffrep-runs/lpft}
COMBOS=${2:-/var/tmp/diffrep-runs/rf-combos-v1}/distill
FT="--data.labels 0.01 --optim.batch_size 64 --optim.lr 0.05 --optim.warmup_steps 50 --trainer.max_steps 500"
ROWS=("r18-random|--student.arch resnet18 --student.stem imagenet"
      "r18-dense2|--init $COMBOS/policy_5_epochs_dense_layer2/labels0.01-seed0/student.safetensors"
      "r18-dense2-l1|--init $COMBOS/policy_5_epochs_dense_layer2_and_layer1/labels0.01-seed0/student.safetensors"
      "mb-random|--student.arch mobilenet_v2 --student.stem imagenet"
      "mb-shipped|--init src/diffrep/teachers/fashion-mnist/student/student.safetensors")
for head in ${HEADS:-probe random}; do
  for seed in ${SEEDS:-0 1 2}; do
    for row in "${ROWS[@]}"; do
      out=$RUNS/$head/${row%%|*}/seed$seed
      [ -f "$out/metrics.json" ] && continue
      # shellcheck disable=SC2086
      .venv/bin/diffrep finetune ${row#*|} $FT --head_init "$head" --seed "$seed" --data.seed "$seed" --overwrite \
        --trainer.progress_bar false --out "$out" | tail -1
    done
  done
done
