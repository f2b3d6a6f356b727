#!/usr/bin/env bash
# The student that ships beside a teacher (shipped.COMPANIONS): a mobilenet_v2 distilled with the policy from 1% of
# the labels for 5 epochs (the v1 companion's recipe, src/diffrep/teachers/fashion-mnist/student/README.md), then
# fine-tuned with the RepFusion table's protocol on seeds 0, 1, 2 (500 steps, batch 64, lr 0.05, 600 labelled images
# drawn per seed). The random-init arm of that protocol does not depend on the teacher (v1's card: 77.27 +/- 0.96).
# Every step is resumable and skipped once done:
#   OMP_NUM_THREADS=1 docs/results/v2/student.sh [TEACHER] [RUN]
set -euo pipefail
cd "$(dirname "$0")/../../.."
TEACHER=${1:-fashion-mnist-v2}
RUN=${2:-/var/tmp/diffrep-runs/companion-student-$TEACHER}
D=.venv/bin/diffrep
resume() { [ -d "$1" ] && echo --resume || true; }
[ -f "$RUN/metrics.json" ] || $D distill --teacher "$TEACHER" --student.arch mobilenet_v2 --student.stem imagenet \
  --data.labels 0.01 --epochs 5 --out "$RUN" $(resume "$RUN")
for seed in 0 1 2; do
  ft=$RUN-finetune/seed$seed
  [ -f "$ft/metrics.json" ] || $D finetune --init "$RUN/student.safetensors" --seed $seed --data.seed $seed \
    --data.labels 0.01 --optim.batch_size 64 --optim.lr 0.05 --optim.warmup_steps 50 --trainer.max_steps 500 \
    --out "$ft" $(resume "$ft")
done
.venv/bin/python - "$RUN-finetune" <<'PY'
import json, statistics, sys
from pathlib import Path
acc = [100 * json.loads((Path(sys.argv[1]) / f"seed{s}/metrics.json").read_text())["test_accuracy"] for s in (0, 1, 2)]
print(f"student fine-tuned at 1% labels: {statistics.mean(acc):.2f} +/- {statistics.stdev(acc):.2f} "
      f"({', '.join(f'{a:.2f}' for a in acc)}); random init (v1's card): 77.27 +/- 0.96")
PY
