#!/usr/bin/env bash
# The RepFusion bar on v2 first: the v2 table's (configs/experiments/repfusion-fashion-mnist-v2.yaml) random-init
# arm and its four lever rows (5 epochs of distillation with the dense layer2 hint: alone, with the multi-tap hint,
# with a REINFORCE baseline, and with both), at 1% labels, 3 seeds, each fine-tuned at 1 and 0.1 x lr for the
# backbone and picked on held-out images. The runs land where the full table puts them (same folders, same
# options), so remeasure.sh's repfusion stage keeps them and its table replaces this one; the experiment keeps the
# config it ran as RUNS/repfusion/config.yaml. VARIANTS (names, space-separated) runs
# any rows of the table, LABELS (fractions, space-separated; default 0.01) at other fractions. Resumable:
#   OMP_NUM_THREADS=1 [VARIANTS="random_init policy_5_epochs_dense_layer2"] [LABELS=0.1] docs/results/v2/levers.sh \
#     [TEACHER] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../../.."
TEACHER=${1:-fashion-mnist-v2}
RUNS=${2:-/var/tmp/diffrep-runs/remeasure-$TEACHER}
mkdir -p "$RUNS"
VARIANTS=${VARIANTS:-random_init policy_5_epochs_dense_layer2 policy_5_epochs_dense_layer2_and_layer1 \
  policy_5_epochs_dense_layer2_baseline policy_5_epochs_dense_layer2_and_layer1_baseline}
# one config file per invocation: runners with other VARIANTS or LABELS may share RUNS at the same time
CONFIG=$(mktemp "$RUNS/levers-XXXXXX.yaml")
trap 'rm -f "$CONFIG"' EXIT
LABELS=${LABELS:-0.01} .venv/bin/python - "$CONFIG" $VARIANTS <<'PY'
import os, sys, yaml
cfg = yaml.safe_load(open("configs/experiments/repfusion-fashion-mnist-v2.yaml"))
cfg["labels"] = [float(f) for f in os.environ["LABELS"].split()]
cfg["variants"] = [v for v in cfg["variants"] if v["name"] in sys.argv[2:]]
yaml.safe_dump(cfg, open(sys.argv[1], "w"), sort_keys=False)
PY
.venv/bin/diffrep experiment repfusion --config "$CONFIG" --teacher "$TEACHER" --out "$RUNS/repfusion" \
  --resume
