"""The most a student could inherit from the teacher at 1% labels: fine-tune the teacher's own encoder.

A classifier made of the shipped teacher's encoder half (time embedding at a fixed t, conv_in, down blocks, mid
block), global average pooling and a fresh linear head is fine-tuned end to end on the 600 labelled images of
each seed with the experiment's fine-tuning schedule (500 steps at batch 64, 50 warm-up steps then cosine, flips)
and tested on all 10k test images. The optimiser is AdamW (lr 1e-3, wd 0.05) with gradients clipped at norm 1:
the students' SGD at lr 0.05 drives this network (GroupNorm, trained with Adam at 3e-4) to chance. The same
network with random weights is the baseline. If the DPM's own weights give little over random weights here, no
student distilled from its features can be expected to gain much more.

    OMP_NUM_THREADS=1 python docs/results/repfusion-pilot/teacher_encoder_finetune.py [--t 10] [--seeds 0,1,2] \
        [--teacher fashion-mnist-v1] [--out results.json]
"""
import argparse
import json

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from torch import nn

from diffrep import data as data_lib
from diffrep.tasks.finetune_module import warmup_cosine
from diffrep.teacher import load_teacher
from diffrep.train import step_loader


class EncoderClassifier(nn.Module):
    def __init__(self, unet: UNet2DModel, t: int, num_classes: int):
        super().__init__()
        self.unet, self.t = unet, t
        self.fc = nn.Linear(unet.config.block_out_channels[-1], num_classes)
        for name in ("up_blocks", "conv_norm_out", "conv_out"):  # the decoder plays no part
            setattr(self.unet, name, None)

    def forward(self, x):
        u = self.unet
        emb = u.time_embedding(u.time_proj(torch.full((len(x),), self.t, device=x.device)).to(x.dtype))
        h = u.conv_in(x)
        for block in u.down_blocks:
            h, _ = block(hidden_states=h, temb=emb)
        return self.fc(u.mid_block(h, emb).mean((2, 3)))


def run(init: str, t: int, seed: int, train, test, steps=500, batch=64, lr=1e-3, warmup=50,
        teacher_path=None) -> tuple[float, float]:
    torch.manual_seed(seed)
    teacher = load_teacher(teacher_path)
    unet = teacher.unet if init == "teacher" else UNet2DModel(**teacher.unet.config)
    net = EncoderClassifier(unet, t, 10).train()
    for p in net.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup, steps))
    loader = iter(step_loader(train, batch, lambda: 0, seed, True))
    losses = []
    for _ in range(steps):
        x, y = next(loader)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        sched.step()
    net.eval()
    with torch.no_grad():
        correct = sum((net(data_lib.to_float(test.images[i:i + 500])).argmax(1) == test.labels[i:i + 500]).sum().item()
                      for i in range(0, len(test), 500))
    return correct / len(test), sum(losses[-50:]) / 50


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--t", type=int, default=10)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--labels", type=float, default=0.01)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--teacher", default=None, help="a UNet2DModel folder or shipped name (default: the shipped one)")
    a = ap.parse_args()
    cfg = {**data_lib.DATA_DEFAULTS, "name": "fashion-mnist"}
    full, test = data_lib.load(cfg, "train"), data_lib.load(cfg, "test")
    results = {}
    for init in ("teacher", "random"):
        for seed in map(int, a.seeds.split(",")):
            acc, loss = run(init, a.t, seed, data_lib.labelled(full, a.labels, seed), test, teacher_path=a.teacher)
            results[f"{init}_seed{seed}"] = acc
            print(f"{init} init, seed {seed}: test accuracy {acc:.4f} (final train loss {loss:.3f})", flush=True)
    for init in ("teacher", "random"):
        accs = torch.tensor([v for k, v in results.items() if k.startswith(init)])
        print(f"{init} init: {100 * accs.mean():.2f} +/- {100 * accs.std():.2f}")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"teacher": a.teacher, "t": a.t, "labels": a.labels, **results}, fh, indent=2)


if __name__ == "__main__":
    main()
