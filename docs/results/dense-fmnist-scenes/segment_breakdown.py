"""Where the segmentation mIoU goes: finding the items (class-agnostic foreground IoU) or naming them (the share of
correctly found foreground pixels that also get the right class), for every segment run of the experiment.

    python segment_breakdown.py [EXPERIMENT_OUT]   # default runs/experiments/repfusion-fmnist-scenes
"""
import sys
from pathlib import Path

import torch
from torchmetrics.classification import MulticlassJaccardIndex

from diffrep import data as data_lib
from diffrep.tasks import load_dense_net
from diffrep.tasks.segment import upsample

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/experiments/repfusion-fmnist-scenes")
test = data_lib.load_dense({**data_lib.DENSE_DEFAULTS, "name": "fmnist-scenes"}, "test")
truth = test.masks.long()
print("| run | mIoU | foreground IoU | class accuracy on found foreground |\n|---|---|---|---|")
for path in sorted(out.glob("finetune-segment/*/*/model.safetensors")):
    net, meta = load_dense_net(path)
    with torch.no_grad():
        pred = torch.cat([upsample(net(test.floats(slice(i, i + 500))), truth.shape[-2:]).argmax(1)
                          for i in range(0, len(test), 500)])
    miou = MulticlassJaccardIndex(num_classes=len(meta["outputs"]), average="macro")(pred, truth)
    found, real = pred > 0, truth > 0
    both = found & real
    print(f"| {path.parent.parent.name}/{path.parent.name} | {100 * float(miou):.2f} | "
          f"{100 * (both.sum() / (found | real).sum()):.2f} | {100 * (pred[both] == truth[both]).float().mean():.2f} |")
