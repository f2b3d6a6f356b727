#!/usr/bin/env bash
# Issue 14's measurements, run again on a teacher (default: fashion-mnist-v2; v1 is fashion-mnist-v1).
# Every stage is resumable and skipped once done, so the same command continues after a lost session:
#   OMP_NUM_THREADS=1 docs/results/v2/remeasure.sh [TEACHER] [RUNS_DIR]  >> RUNS_DIR/remeasure.log 2>&1
# Stages, in order (each writes RUNS_DIR/<stage>/):
#   pdae       PDAE for 10,000 steps with the z probe every 2,500 (configs/pdae/fashion-mnist-v2.yaml), then
#              reconstruct, gap and encode; first, since its model ships beside the teacher (shipped.COMPANIONS)
#   encoder    the teacher-encoder fine-tune diagnostic at 1% labels (trained against random weights, 3 seeds)
#   features   the probe study's features (8 t x 5 taps x 2 inputs, gap + grid:2, trained and random teacher),
#              stored shard by shard (diffrep features --resume), then probed (diffrep probe --features)
#   repfusion  the RepFusion table (configs/experiments/repfusion-fashion-mnist-v2.yaml)
#   dense      the fmnist-scenes table (configs/experiments/repfusion-fmnist-scenes.yaml)
set -euo pipefail
TEACHER=${1:-fashion-mnist-v2}
RUNS=${2:-/var/tmp/diffrep-runs/remeasure-$TEACHER}
D="$(cd "$(dirname "$0")/../../.." && pwd)/.venv/bin/diffrep"
PY="$(dirname "$D")/python"
mkdir -p "$RUNS"
done_() { [ -f "$1/metrics.json" ] || [ -f "$1" ]; }
resume() { [ -d "$1" ] && echo --resume || true; }
stage() { echo "== $(date -u +%FT%TZ) $*"; }

stage pdae
done_ "$RUNS/pdae" || "$D" pdae fit --config configs/pdae/fashion-mnist-v2.yaml --teacher "$TEACHER" \
  --out "$RUNS/pdae" $(resume "$RUNS/pdae")
for app in reconstruct gap encode; do
  done_ "$RUNS/pdae-$app" || "$D" pdae "$app" --model "$RUNS/pdae/model" --overwrite --out "$RUNS/pdae-$app"
done

stage encoder
done_ "$RUNS/encoder.json" || "$PY" docs/results/repfusion-pilot/teacher_encoder_finetune.py --teacher "$TEACHER" \
  --out "$RUNS/encoder.json"

stage features
if ! done_ "$RUNS/probe"; then
  [ -f "$RUNS/features/metrics.json" ] || "$D" features --teacher "$TEACHER" --timesteps 0,10,50,100,250,500,750,999 \
    --inputs clean,noised --pool gap,grid:2 --random_teacher true --out "$RUNS/features" $(resume "$RUNS/features")
  "$D" probe --features "$RUNS/features" --overwrite --out "$RUNS/probe"
fi

stage repfusion
done_ "$RUNS/repfusion" || "$D" experiment repfusion --config configs/experiments/repfusion-fashion-mnist-v2.yaml \
  --teacher "$TEACHER" --out "$RUNS/repfusion" $(resume "$RUNS/repfusion")

stage dense
done_ "$RUNS/dense" || "$D" experiment repfusion --config configs/experiments/repfusion-fmnist-scenes.yaml \
  --teacher "$TEACHER" --out "$RUNS/dense" $(resume "$RUNS/dense")
stage done
