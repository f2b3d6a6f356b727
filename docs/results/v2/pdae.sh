#!/usr/bin/env bash
# Ship one chunk of the v2 PDAE (a `diffrep pdae fit` folder, by default remeasure.sh's latest) beside the teacher,
# as src/diffrep/teachers/fashion-mnist-v2/pdae (float16 weights, its config, which names the teacher by its shipped
# name), append its curves to docs/results/pdae-fashion-mnist-v2/ (pdae_chain.py), and copy its measurements there
# (fit; reconstruct, gap and encode where RUN-reconstruct etc. exist). The model card (README.md there) is written
# by hand from those files. The next chunk starts from the shipped model (remeasure.sh's pdae stage).
#   docs/results/v2/pdae.sh RUN
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUN=${1:?usage: pdae.sh RUN (a pdae fit folder)}
DST=src/diffrep/teachers/fashion-mnist-v2/pdae
DOCS=docs/results/pdae-fashion-mnist-v2
grep -q '"teacher": "fashion-mnist-v2"' "$RUN/model/config.json" || { echo "$RUN: not a model of fashion-mnist-v2"; exit 1; }
mkdir -p "$DST" "$DOCS"
cp "$RUN/model/config.json" "$DST/"
.venv/bin/python docs/results/companions/to_float16.py "$RUN/model/model.safetensors" "$DST/model.safetensors"
.venv/bin/python docs/results/v2/pdae_chain.py "$RUN" "$DOCS"
steps=$(.venv/bin/python docs/results/v2/pdae_chain.py --steps "$RUN/model")
cp "$RUN/metrics.json" "$DOCS/fit_metrics-$steps.json"
for app in reconstruct gap encode; do
  [ -f "$RUN-$app/metrics.json" ] && cp "$RUN-$app/metrics.json" "$DOCS/${app}_metrics-$steps.json"
done
for f in "$RUN-reconstruct/"*.png "$RUN-gap/gap.csv" "$RUN-gap/gap.png"; do
  [ -f "$f" ] && cp "$f" "$DOCS/"
done
du -sh "$DST" "$DOCS"
