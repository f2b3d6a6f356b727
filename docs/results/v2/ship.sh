#!/usr/bin/env bash
# Ship a teacher run's exported EMA model as src/diffrep/teachers/fashion-mnist-v2: the weights in float16
# (docs/results/companions/to_float16.py; biases and norms stay float32), its configs and samples, and the loss and
# probe curves of both training phases (docs/results/v2/history.py, from the committed history.csv). The card
# (README.md) is written by hand, since v2's training spans two runs; a first ship starts it from the run's own card.
# The default teacher is DEFAULT in src/diffrep/shipped.py.
#   docs/results/v2/ship.sh /var/tmp/diffrep-runs/teacher-tail70/model
set -euo pipefail
cd "$(dirname "$0")/../../.."
SRC=${1:?usage: ship.sh MODEL_DIR}
DST=src/diffrep/teachers/fashion-mnist-v2
mkdir -p "$DST"
for f in config.json scheduler_config.json samples.png; do cp "$SRC/$f" "$DST/"; done
[ -f "$DST/README.md" ] || cp "$SRC/README.md" "$DST/"
.venv/bin/python docs/results/companions/to_float16.py "$SRC/diffusion_pytorch_model.safetensors" \
  "$DST/diffusion_pytorch_model.safetensors"
.venv/bin/python docs/results/v2/history.py
du -sh "$DST"
