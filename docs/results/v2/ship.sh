#!/usr/bin/env bash
# Ship a teacher run's exported EMA model as src/diffrep/teachers/fashion-mnist-v2: the weights in float16
# (docs/results/companions/to_float16.py; biases and norms stay float32), the run's card, samples and curves, and the
# card's retrain command pointed at configs/dpm/fashion-mnist-v2.yaml. Making it the default (DEFAULT in
# src/diffrep/shipped.py) waits for its companions (a PDAE model and a student, see shipped.COMPANIONS), so that the
# quickstart keeps showing pre-fitted models.
#   docs/results/v2/ship.sh /var/tmp/diffrep-runs/teacher-early-100000
set -euo pipefail
cd "$(dirname "$0")/../../.."
SRC=${1:?usage: ship.sh MODEL_DIR}
DST=src/diffrep/teachers/fashion-mnist-v2
rm -rf "$DST"
mkdir -p "$DST"
for f in config.json scheduler_config.json README.md samples.png loss.png probes.png; do cp "$SRC/$f" "$DST/"; done
.venv/bin/python docs/results/companions/to_float16.py "$SRC/diffusion_pytorch_model.safetensors" \
  "$DST/diffusion_pytorch_model.safetensors"
.venv/bin/python - "$DST/README.md" <<'PY'
import re
import sys
from pathlib import Path

card = Path(sys.argv[1])
retrain = "## Retrain\n\n```\nOMP_NUM_THREADS=2 diffrep dpm fit --config configs/dpm/fashion-mnist-v2.yaml\n```"
card.write_text(re.sub(r"## Retrain\n\n```\n.*?\n```", lambda _: retrain, card.read_text(), flags=re.S))
PY
du -sh "$DST"
