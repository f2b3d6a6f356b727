#!/usr/bin/env bash
# The v2 RepFusion measurements that 2 CPU cores could not finish, in one call on a lent GPU (the developers'
# guide: one prepared script, 15 minutes of device time in all): the v2 table (repfusion-fashion-mnist-v2.yaml) at
# 1% and 10% labels with its reference rows, the baseline lever row and three longer or policy-free lever rows,
# and the dense fmnist-scenes table (repfusion-fmnist-scenes.yaml) on v2. Every run is the CPU's code and options;
# only the device differs. TABLE_RUNNERS + DENSE_RUNNERS processes share the two experiments' folders through
# their lock files (one core and a slice of the GPU each); BUDGET seconds after the first starts, all are stopped.
# Every minute, and at the end, what exists is packed into $OUT/runs.tar.gz (metrics, configs, logs, plots; no
# checkpoints or weights). Unpacked into the same RUNS on a CPU machine, the same commands resume the rest there
# and tabulate everything:
#   tar -xzf runs.tar.gz -C /  &&  VARIANTS="..." LABELS="0.01 0.1" docs/results/v2/levers.sh fashion-mnist-v2 RUNS
# The call (device tool's run), from the repository root, with timeout_s >= BUDGET + 60:
#   OUT=$OUT BUDGET=480 PY=/opt/torch/.venv/bin/python3 docs/results/v2/gpu.sh        carry: [".whl", ".gpu"]
# Before it, on this machine: .whl holds the wheels the GPU image lacks (diffusers, importlib_metadata,
# lazy_importer) and .gpu/fashion-mnist the Debian package's four files, both in .git/info/exclude; and the tree
# that travels must stay under 64 MiB, so the weights the call does not read (v1's teacher, PDAE and student,
# docs/results/teacher-v2/*/, v2's PDAE and student) are taken out of the index (git rm --cached, listed in
# .git/info/exclude) for the call and put back after it (git reset).
# First try, 2026-12-04: all 15 minutes went and nothing came back (no output, no file); most likely the pack,
# which then ran once at the end over every file, killed runs' ~100 MB checkpoint temporaries included, and past
# the call's limit. Hence the whitelist, the pack every minute and timeout -k.
set -uo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-/tmp/gpu-out}
RUNS=${RUNS:-/var/tmp/diffrep-runs/gpu-fashion-mnist-v2}
BUDGET=${BUDGET:-500}
TABLE_RUNNERS=${TABLE_RUNNERS:-10}
DENSE_RUNNERS=${DENSE_RUNNERS:-3}
PY=${PY:-python3}  # the image's PyTorch python, e.g. /opt/torch/.venv/bin/python3
VARIANTS=${VARIANTS:-random_init policy_clean policy_noised uniform best_fixed policy_5_epochs_dense_layer2_baseline \
  policy_20_epochs_dense_layer2_baseline best_fixed_5_epochs_dense_layer2 best_fixed_20_epochs_dense_layer2}
mkdir -p "$OUT" "$RUNS/logs"

# The image's python3 has torch, lightning and the rest; diffusers comes as wheels. levers.sh calls .venv/bin/*.
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD/src OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
if [ ! -f .venv/pyvenv.cfg ]; then  # no environment of our own: wrappers around PY (a link would lose its venv)
  mkdir -p .venv/bin
  printf '#!/bin/sh\nexec %s "$@"\n' "$PY" > .venv/bin/python
  chmod +x .venv/bin/python
  printf '#!/bin/sh\nexec %s -m diffrep.cli "$@"\n' "$PY" > .venv/bin/diffrep
  chmod +x .venv/bin/diffrep
fi
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  mkdir -p /usr/share/datasets/fashion-mnist && cp .gpu/fashion-mnist/*.gz /usr/share/datasets/fashion-mnist/
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  .venv/bin/python -c "import torch, lightning, diffusers, diffrep.cli; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available(), 'lightning', lightning.__version__, 'diffusers', diffusers.__version__)"
} > "$RUNS/logs/env.txt" 2>&1 || { cat "$RUNS/logs/env.txt"; exit 1; }
cat "$RUNS/logs/env.txt"

# The pack: metrics, configs, tables, logs and plots only (a run stopped mid-checkpoint leaves a ~100 MB
# .last.ckpt.tmpPID beside its last.ckpt), written again every minute so that a call cut off still returns one.
pack() {
  (cd / && find "${RUNS#/}" -type f \( -name '*.json' -o -name '*.md' -o -name '*.csv' -o -name '*.yaml' \
    -o -name '*.png' -o -name '*.log' -o -name 'events.out.tfevents.*' \) -size -8M -print0 \
    | tar -czf "$OUT/.runs.tar.gz" --null -T - 2>/dev/null) && mv "$OUT/.runs.tar.gz" "$OUT/runs.tar.gz"
}
progress() {
  for exp in repfusion dense; do
    printf '%s: %s runs finished; ' "$exp" "$(find "$RUNS/$exp" -name metrics.json 2>/dev/null | wc -l)"
  done
  echo "$((SECONDS - start)) s"
}

start=$SECONDS
# timeout -k: the runner dies at once but Lightning defers SIGTERM to its next step (a child outlived its runner
# in a CPU test), so KILL follows 20 s later
for i in $(seq "$TABLE_RUNNERS"); do
  VARIANTS="$VARIANTS" LABELS="0.01 0.1" timeout -k 20 $((BUDGET - (SECONDS - start))) docs/results/v2/levers.sh \
    fashion-mnist-v2 "$RUNS" > "$RUNS/logs/table-$i.log" 2>&1 &
  sleep 2  # staggered, so that each runner claims the next free distillation
done
for i in $(seq "$DENSE_RUNNERS"); do
  timeout -k 20 $((BUDGET - (SECONDS - start))) .venv/bin/diffrep experiment repfusion \
    --config configs/experiments/repfusion-fmnist-scenes.yaml --teacher fashion-mnist-v2 --out "$RUNS/dense" \
    --resume > "$RUNS/logs/dense-$i.log" 2>&1 &
  sleep 2
done
while [ -n "$(jobs -r)" ]; do
  sleep 60
  progress
  pack
done
pkill -KILL -f "m diffrep.cli" 2>/dev/null  # nothing may outlive the runners
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> "$RUNS/logs/env.txt" 2>&1
progress
pack
ls -la "$OUT"
