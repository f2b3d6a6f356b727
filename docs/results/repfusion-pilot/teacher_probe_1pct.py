"""Linear probes (GAP and 2x2 grid, clean input) of the shipped teacher's features with 1% of the train labels
(600 images) on 2,000 test images, next to raw pixels: the ceiling of what a student can inherit at 1% labels."""
import torch
from diffrep import data as data_lib
from diffrep.probe.linear import probe
from diffrep.teacher import load_teacher
T = load_teacher()
cfg = {**data_lib.DATA_DEFAULTS, "name": "fashion-mnist", "resolution": 32, "channels": 1,
       "test_size": 2000, "labels": 0.01}
train = data_lib.labelled(data_lib.load(cfg, "train"), 0.01, 0); test = data_lib.load(cfg, "test")
print(len(train))
taps = ["mid_block.resnets.1.conv2", "mid_block", "down_blocks.2"]
def feats(data, t):
    out = {k: [] for k in taps}
    with torch.no_grad():
        for i in range(0, len(data), 500):
            f = T.features(data_lib.to_float(data.images[i:i+500]), t, taps)
            for k in taps:
                m = f[k]
                out[k].append(torch.cat([m.mean((2, 3)), torch.nn.functional.adaptive_avg_pool2d(m, 2).flatten(1)], 1))
    return {k: torch.cat(v) for k, v in out.items()}
px = lambda d: data_lib.to_float(d.images).flatten(1)
print("pixels 600", probe(px(train), train.labels, px(test), test.labels))
for t in [10, 434]:
    a, b = feats(train, t), feats(test, t)
    for k in taps:
        c = a[k].shape[1] // 5
        print(t, k, "gap", probe(a[k][:, :c], train.labels, b[k][:, :c], test.labels),
              "grid2", probe(a[k][:, c:], train.labels, b[k][:, c:], test.labels))
