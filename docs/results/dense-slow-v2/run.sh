#!/usr/bin/env bash
# The combination not tried before: a stronger teacher, the dense layer2 hint with 5 epochs of distillation, and a
# slow backbone in fine-tuning (diffrep finetune --optim.backbone_lr_ratio R). resnet18 student, 1% labels, 3 seeds,
# otherwise the RepFusion table's protocol; its random-init arm is docs/results/backbone-lr-v1's (R = 1, 79.61).
# Resumable: a finished run is skipped.
#   OMP_NUM_THREADS=1 docs/results/dense-slow-v2/run.sh TEACHER [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../../.."
TEACHER=${1:?usage: run.sh TEACHER [RUNS]}
RUNS=${2:-/var/tmp/diffrep-runs/dense-slow-v2}
D=.venv/bin/diffrep
student=$RUNS/distill/student.safetensors
if [ ! -f "$RUNS/distill/metrics.json" ]; then
  resume=$([ -d "$RUNS/distill" ] && echo --resume || true)
  $D distill --teacher "$TEACHER" --student.arch resnet18 --student.stem imagenet --student.tap layer2 \
    --loss.mode dense --timesteps policy --epochs 5 --optim.batch_size 128 --data.labels 0.01 --data.seed 0 --seed 0 \
    --trainer.checkpoint_every_n_steps 100 --trainer.progress_bar false --out "$RUNS/distill" $resume | tail -1
fi
FT="--data.labels 0.01 --optim.batch_size 64 --optim.lr 0.05 --optim.warmup_steps 50 --trainer.max_steps 500"
for ratio in ${RATIOS:-0.03 0.1}; do
  for seed in ${SEEDS:-0 1 2}; do
    out=$RUNS/ratio$ratio/r18-dense2/seed$seed
    [ -f "$out/metrics.json" ] && continue
    # shellcheck disable=SC2086
    $D finetune --init "$student" $FT --optim.backbone_lr_ratio "$ratio" --seed "$seed" --data.seed "$seed" \
      --overwrite --trainer.progress_bar false --out "$out" | tail -1
  done
done
