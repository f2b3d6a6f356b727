#!/usr/bin/env bash
# Train the Fashion-MNIST teacher on a lent H200 in one `device run` (issue 14). What it needs travels with it:
#   here, once:   pip download --no-deps --only-binary=:all: -d .whl diffusers==0.42.1   (the GPU image lacks it)
#                 mkdir -p .gpu/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz .gpu/fashion-mnist/
#                 (both folders are in .git/info/exclude)
#   device run:   command "bash docs/results/teacher-v2/gpu_train.sh", carry [".whl", ".gpu"], timeout_s 600
# The run stops after BUDGET seconds whatever happens; the EMA weights of the last checkpoint (every 500 steps)
# come back in $OUT as safetensors shards under 16 MiB, with eval.csv, eval.png, samples.png and the log.
# Tested on the CPU with: PY=.venv/bin/python OUT=/tmp/gpu-out STEPS=4 EXTRA="--data.train_size 256" bash ...
set -uo pipefail
PY=${PY:-python3}
OUT=${OUT:?set OUT}
STEPS=${STEPS:-8000}
BUDGET=${BUDGET:-470}
if ! $PY -c "import diffusers" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
RUN=/tmp/teacher-gpu
rm -rf $RUN
$PY -c "import torch; print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
timeout $BUDGET $PY -m diffrep.cli dpm fit --config configs/dpm/fashion-mnist-gpu.yaml --data.root .gpu/fashion-mnist \
  --trainer.max_steps $STEPS ${EXTRA:-} --out $RUN 2>&1 | tee $OUT/train.log | grep -v "it/s" | tail -20
echo "dpm fit exit: ${PIPESTATUS[0]}"
$PY - "$RUN" "$OUT" <<'PY'
import shutil, sys, torch
from pathlib import Path
from diffusers import UNet2DModel
run, out = Path(sys.argv[1]), Path(sys.argv[2])
ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
ema = {k[len("ema.module."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("ema.module.")}
config = UNet2DModel.load_config(run / "model") if (run / "model").is_dir() else None
if config is None:  # stopped before the export: the architecture from the config the run wrote
    import yaml
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    config = {**cfg["model"], "sample_size": cfg["data"]["resolution"], "in_channels": cfg["data"]["channels"],
              "out_channels": cfg["data"]["channels"]}
unet = UNet2DModel.from_config(config)
unet.load_state_dict(ema)
unet.save_pretrained(out / "model", safe_serialization=True, max_shard_size="12MB")
print(f"step {ckpt['global_step']}, {ckpt.get('train_seconds', 0):.0f} s of training; EMA weights in {out / 'model'}")
for name in ("eval.csv", "eval.png", "samples.png"):  # 8 files come back at most: 4 of the model, these, the log
    if (run / name).exists():
        shutil.copy(run / name, out / name)
PY
