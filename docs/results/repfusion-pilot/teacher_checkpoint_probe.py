"""Linear probes (GAP, clean input) of the shipped teacher or a `dpm fit` checkpoint's EMA weights, with 600 and
10,000 labelled train images (a 10k stratified subset), on 2,000 test images.

    python teacher_checkpoint_probe.py shipped|CHECKPOINT [TAPS] [TIMESTEPS]
"""
import sys, torch
from diffrep import data as data_lib
from diffrep.probe.linear import probe
from diffrep.teacher import load_teacher
T = load_teacher()
if sys.argv[1] != "shipped":
    ck = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
    sd = {k[len("ema.module."):]: v for k, v in ck["state_dict"].items() if k.startswith("ema.module.")}
    print("step", ck["global_step"], T.unet.load_state_dict(sd, strict=False))
cfg = {**data_lib.DATA_DEFAULTS, "name": "fashion-mnist", "resolution": 32, "channels": 1,
       "train_size": 10000, "test_size": 2000}
full = data_lib.load(cfg, "train"); test = data_lib.load(cfg, "test")
few = data_lib.labelled(full, 0.06, 0)
taps = sys.argv[2].split(",") if len(sys.argv) > 2 else ["mid_block.resnets.1.conv2", "mid_block"]
def feats(data, t):
    out = {k: [] for k in taps}
    with torch.no_grad():
        for i in range(0, len(data), 500):
            f = T.features(data_lib.to_float(data.images[i:i+500]), t, taps)
            for k in taps: out[k].append(f[k].mean((2, 3)))
    return {k: torch.cat(v) for k, v in out.items()}
for t in ([int(v) for v in sys.argv[3].split(",")] if len(sys.argv) > 3 else [10, 250]):
    a, af, b = feats(full, t), feats(few, t), feats(test, t)
    for k in taps:
        print(f"t={t} {k}: {len(few)} labels {probe(af[k], few.labels, b[k], test.labels):.4f}  "
              f"{len(full)} labels {probe(a[k], full.labels, b[k], test.labels):.4f}")
