"""Linear probe of a student's frozen, pooled layer4 features (10k train / 2k test images): a random resnet18
vs each backbone file given (`python student_probe.py [BACKBONE.safetensors ...]`)."""
import sys, torch
from diffrep import data as data_lib
from diffrep.probe.linear import probe
from diffrep.tasks import build_student, load_backbone, student_features
torch.manual_seed(0)
cfg = {**data_lib.DATA_DEFAULTS, "name": "fashion-mnist", "resolution": 32, "channels": 1,
       "train_size": 10000, "test_size": 2000}
train, test = data_lib.load(cfg, "train"), data_lib.load(cfg, "test")
def feats(model, data):
    f = student_features(model.eval(), ["layer4"]); out = []
    with torch.no_grad():
        for i in range(0, len(data), 500):
            x = data_lib.to_float(data.images[i:i+500]) if hasattr(data_lib, "to_float") else data.images[i:i+500]
            out.append(f(x)["layer4"].mean((2, 3)))
    return torch.cat(out)
for path in ["random"] + sys.argv[1:]:
    if path == "random":
        m = build_student("resnet18", 1, "imagenet")
    else:
        m, meta = load_backbone(path)
    acc = probe(feats(m, train), train.labels, feats(m, test), test.labels)
    print(path, acc)
