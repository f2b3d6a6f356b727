#!/usr/bin/env bash
# Issue 14's measurements, run again on a teacher (default: fashion-mnist-v2; v1 is fashion-mnist-v1).
# Every stage is resumable and skipped once done, so the same command continues after a lost session:
#   OMP_NUM_THREADS=1 docs/results/v2/remeasure.sh [TEACHER] [RUNS_DIR]  >> RUNS_DIR/remeasure.log 2>&1
# STAGES="pdae dense" runs only those; PDAE_STEPS=17500 carries the PDAE chain on past its 10,000 steps.
# Stages, in order (each writes RUNS_DIR/<stage>/):
#   pdae       PDAE for 10,000 steps with the z probe every 2,500 (configs/pdae/fashion-mnist-v2.yaml), then
#              reconstruct, gap and encode; first, since its model ships beside the teacher (shipped.COMPANIONS).
#              In chunks of 2,500 steps: a run folder and its optimizer state do not outlive this machine, so each
#              chunk is a warm start (pdae fit --init) from the model the chunk before shipped (pdae.sh), on the
#              chain's step axis (v2 only: the chain lives in src/diffrep/teachers/fashion-mnist-v2/pdae)
#   features   the probe study's features (8 t x 5 taps x 2 inputs, gap + grid:2, trained and random teacher),
#              stored shard by shard (diffrep features --resume), then probed (diffrep probe --features)
#   repfusion  the RepFusion table (configs/experiments/repfusion-fashion-mnist-v2.yaml)
#   dense      the fmnist-scenes table (configs/experiments/repfusion-fmnist-scenes.yaml)
# The teacher-encoder fine-tune diagnostic (1% labels, trained against random weights) is not a stage: it was measured
# on v2's own weights when v2 was chosen (docs/results/teacher-v2/encoder-v2.json, the gap +6.27).
# levers.sh runs the RepFusion table's random-init and lever rows first, into the same folders.
set -euo pipefail
TEACHER=${1:-fashion-mnist-v2}
RUNS=$(realpath -m "${2:-/var/tmp/diffrep-runs/remeasure-$TEACHER}")
cd "$(dirname "$0")/../../.."
D=.venv/bin/diffrep
PY=.venv/bin/python
mkdir -p "$RUNS"
done_() { [ -f "$1/metrics.json" ] || [ -f "$1" ]; }
resume() { [ -d "$1" ] && echo --resume || true; }
stage() { echo "== $(date -u +%FT%TZ) $*"; }
STAGES=" ${STAGES:-pdae features repfusion dense} "
want() { [[ $STAGES == *" $1 "* ]]; }
PDAE_STEPS=${PDAE_STEPS:-10000}

if want pdae; then
stage pdae
SHIPPED=src/diffrep/teachers/fashion-mnist-v2/pdae
have=$("$PY" docs/results/v2/pdae_chain.py --steps "$SHIPPED")  # 0: none shipped yet
while [ "$have" -lt "$PDAE_STEPS" ]; do
  run=$RUNS/pdae-$((have + 2500))
  init=$([ "$have" -gt 0 ] && echo "--init $SHIPPED" || true)
  # shellcheck disable=SC2086
  done_ "$run" || "$D" pdae fit --config configs/pdae/fashion-mnist-v2.yaml --teacher "$TEACHER" $init \
    --trainer.max_steps 2500 --out "$run" $(resume "$run")
  docs/results/v2/pdae.sh "$run"
  have=$((have + 2500))
done
last=$RUNS/pdae-$PDAE_STEPS
model=$([ -d "$last/model" ] && echo "$last/model" || echo "$SHIPPED")  # the float32 model when this machine has it
for app in reconstruct gap encode; do
  done_ "$last-$app" || "$D" pdae "$app" --model "$model" --overwrite --out "$last-$app"
done
if [ -d "$last/model" ]; then docs/results/v2/pdae.sh "$last"; fi  # again, with the applications' measurements
fi

if want features; then
stage features
if ! done_ "$RUNS/probe"; then
  [ -f "$RUNS/features/metrics.json" ] || "$D" features --teacher "$TEACHER" --timesteps 0,10,50,100,250,500,750,999 \
    --inputs clean,noised --pool gap,grid:2 --random_teacher true --out "$RUNS/features" $(resume "$RUNS/features")
  "$D" probe --features "$RUNS/features" --overwrite --out "$RUNS/probe"
fi
fi

if want repfusion; then
stage repfusion
done_ "$RUNS/repfusion" || "$D" experiment repfusion --config configs/experiments/repfusion-fashion-mnist-v2.yaml \
  --teacher "$TEACHER" --out "$RUNS/repfusion" $(resume "$RUNS/repfusion")
fi

if want dense; then
stage dense
done_ "$RUNS/dense" || "$D" experiment repfusion --config configs/experiments/repfusion-fmnist-scenes.yaml \
  --teacher "$TEACHER" --out "$RUNS/dense" $(resume "$RUNS/dense")
fi
stage done
