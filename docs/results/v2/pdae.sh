#!/usr/bin/env bash
# Ship the PDAE model of the v2 re-measurement (remeasure.sh's pdae stage) beside the teacher, as
# src/diffrep/teachers/fashion-mnist-v2/pdae (float16 weights, its config, which names the teacher by its shipped
# name), and copy its measurements (fit, z probe, reconstruct, gap, encode) into docs/results/pdae-fashion-mnist-v2/.
# The model card (README.md there) is written by hand from those files.
#   docs/results/v2/pdae.sh [RUNS_DIR]
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${1:-/var/tmp/diffrep-runs/remeasure-fashion-mnist-v2}
DST=src/diffrep/teachers/fashion-mnist-v2/pdae
DOCS=docs/results/pdae-fashion-mnist-v2
grep -q '"teacher": "fashion-mnist-v2"' "$RUNS/pdae/model/config.json" || { echo "not a model of fashion-mnist-v2"; exit 1; }
mkdir -p "$DST" "$DOCS"
cp "$RUNS/pdae/model/config.json" "$DST/"
.venv/bin/python docs/results/companions/to_float16.py "$RUNS/pdae/model/model.safetensors" "$DST/model.safetensors"
cp "$RUNS/pdae/eval.csv" "$RUNS/pdae/z_probe.csv" "$RUNS/pdae/z_probe.png" "$DOCS/"
cp "$RUNS/pdae/metrics.json" "$DOCS/fit_metrics.json"
for app in reconstruct gap encode; do
  [ -f "$RUNS/pdae-$app/metrics.json" ] && cp "$RUNS/pdae-$app/metrics.json" "$DOCS/${app}_metrics.json"
done
cp "$RUNS/pdae-reconstruct/"*.png "$RUNS/pdae-gap/gap.csv" "$RUNS/pdae-gap/gap.png" "$DOCS/" 2>/dev/null || true
du -sh "$DST" "$DOCS"
