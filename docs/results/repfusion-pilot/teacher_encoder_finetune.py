"""The most a student could inherit from the teacher at 1% labels: fine-tune the teacher's own encoder.

A classifier made of the shipped teacher's encoder half (time embedding at a fixed t, conv_in, down blocks, mid
block), global average pooling and a fresh linear head is fine-tuned end to end on the 600 labelled images of
each seed with the experiment's fine-tuning schedule (500 steps at batch 64, 50 warm-up steps then cosine, flips)
and tested on all 10k test images. The optimiser is AdamW (lr 1e-3, wd 0.05) with gradients clipped at norm 1:
the students' SGD at lr 0.05 drives this network (GroupNorm, trained with Adam at 3e-4) to chance. The same
network with random weights is the baseline. If the DPM's own weights give little over random weights here, no
student distilled from its features can be expected to gain much more.

`--lrs 1e-3,3e-4,1e-4` picks the rate per initialisation instead of using 1e-3 for both: each rate is run on the
first seed and scored on 5,000 validation images (train images outside every seed's labelled 600), and the best
one is then run on every seed and tested. Pre-trained weights usually want a lower rate than random ones.
`--backbone_lr_ratios 1,0.1` does the same for the encoder's rate as a fraction of the head's (the choice the
RepFusion tables make for their students, `finetune --optim.backbone_lr_ratio`); with both, every pair is a
candidate.

`--head probe` is LP-FT (as `diffrep finetune --head_init probe`): the head starts as the project's linear probe of
the frozen encoder's pooled features on the labelled images (standardisation folded in), and the probe's own test
accuracy is reported too.

`--tap` and `--pool` read another block, pooled another way; the modules after the tap are dropped. `--tap
up_blocks.0` (the first decoder block, with the deepest skip connection) is the v2 probe study's best tap, with GAP
and with `--pool grid:2` (docs/results/teacher-v2/README.md, "Another readout").

    OMP_NUM_THREADS=1 python docs/results/repfusion-pilot/teacher_encoder_finetune.py [--t 10] [--seeds 0,1,2] \
        [--teacher fashion-mnist-v1] [--lrs 1e-3] [--backbone_lr_ratios 1] [--head random|probe] \
        [--tap mid_block] [--pool gap] [--inits teacher,random] [--out results.json]
"""
import argparse
import json
import math

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from torch import nn

from diffrep import data as data_lib
from diffrep.errors import UserError
from diffrep.probe.features import parse_pool, pool_map, pooled_shape
from diffrep.tasks.finetune_module import warmup_cosine
from diffrep.tasks.probe_head import fit_linear_head, head_inputs
from diffrep.teacher import load_teacher
from diffrep.teacher.taps import run_with_taps
from diffrep.train import step_loader


class EncoderClassifier(nn.Module):
    """The UNet up to `tap` (the encoder half by default) at a fixed t, pooled to a `grid` x `grid` map and
    flattened (`tap_shape` is the tap's (C, H, W)), then a linear head. The modules after the tap are removed, so
    they are neither run nor trained."""

    def __init__(self, unet: UNet2DModel, t: int, num_classes: int, tap: str, grid: int, tap_shape: tuple):
        super().__init__()
        self.unet, self.t, self.tap, self.grid = unet, t, tap, grid
        block, _, rest = tap.partition(".")
        kept = int(rest.split(".")[0]) + 1 if block in ("down_blocks", "up_blocks") else 0  # of the tap's block list
        if block in ("conv_in", "down_blocks"):  # a tap before the mid block
            unet.down_blocks, unet.mid_block = unet.down_blocks[:kept], None
        unet.up_blocks = unet.up_blocks[:kept if block == "up_blocks" else 0]
        unet.conv_norm_out = unet.conv_act = unet.conv_out = None
        self.fc = nn.Linear(math.prod(pooled_shape(tap_shape, grid)), num_classes)

    def forward(self, x):
        t = torch.full((len(x),), self.t, device=x.device)
        return self.fc(pool_map(run_with_taps(self.unet, [self.tap], True, x, t)[self.tap], self.grid))


def probe_head(net: EncoderClassifier, train) -> None:
    """LP-FT's first stage: net.fc becomes the linear probe of the frozen pooled features (GroupNorm: no running
    statistics to re-estimate)."""
    fit_linear_head(net.fc, head_inputs(net, net.fc, train, batch_size=200), train.labels, 10)


def run(init: str, t: int, seed: int, train, steps=500, batch=64, lr=1e-3, warmup=50,
        teacher_path=None, head="random", test=None, backbone_lr_ratio=1.0, tap="mid_block",
        grid=1) -> tuple[nn.Module, float, float | None]:
    """The fine-tuned net, its mean train loss over the last 50 steps and, with head="probe" and a test set, the
    probe head's test accuracy before fine-tuning."""
    torch.manual_seed(seed)
    teacher = load_teacher(teacher_path)
    unet = teacher.unet if init == "teacher" else UNet2DModel(**teacher.unet.config)
    net = EncoderClassifier(unet, t, 10, tap, grid, teacher.taps[tap][0]).train()
    probed = None
    if head == "probe":
        probe_head(net, train)
        if test is not None:
            probed = accuracy(net.eval(), test)
            net.train()
    for p in net.parameters():
        p.requires_grad_(True)
    backbone = [p for name, p in net.named_parameters() if not name.startswith("fc.")]
    opt = torch.optim.AdamW([{"params": backbone, "lr": lr * backbone_lr_ratio}, {"params": net.fc.parameters()}],
                            lr=lr, weight_decay=0.05)
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
    return net.eval(), sum(losses[-50:]) / 50, probed


@torch.no_grad()
def accuracy(net: nn.Module, data) -> float:
    correct = sum((net(data_lib.to_float(data.images[i:i + 500])).argmax(1) == data.labels[i:i + 500]).sum().item()
                  for i in range(0, len(data), 500))
    return correct / len(data)


def validation(full, fraction, seeds, size=5000, seed=0):
    """`size` train images outside every seed's labelled subset, stratified by class."""
    used = torch.cat([data_lib.stratified_subset(full.labels, fraction, s) for s in seeds])
    rest = data_lib.outside(len(full), used)
    return full.subset(rest[data_lib.stratified_subset(full.labels[rest], size, seed)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--t", type=int, default=10)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--labels", type=float, default=0.01)
    ap.add_argument("--lrs", default="1e-3", help="AdamW rates; with several, each init picks its own on validation")
    ap.add_argument("--backbone_lr_ratios", default="1",
                    help="the encoder's rate as a fraction of the head's; with several, each init picks on validation")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--teacher", default=None, help="a UNet2DModel folder or shipped name (default: the shipped one)")
    ap.add_argument("--tap", default="mid_block",
                    help="the block the head reads: mid_block (the encoder half), a down block, or up_blocks.K "
                         "(the decoder up to it, with its skip connections)")
    ap.add_argument("--pool", default="gap", help="gap, grid:K or full (as the probe's --pool)")
    ap.add_argument("--head", default="random", choices=("random", "probe"), help="probe: LP-FT")
    ap.add_argument("--inits", default="teacher,random",
                    help="teacher: the DPM's weights; random: the same network untrained (the same for any teacher "
                         "of one architecture, so a second teacher may skip it)")
    a = ap.parse_args()
    inits = a.inits.split(",")
    try:
        readout = {"tap": load_teacher(a.teacher).check_taps([a.tap])[0], "grid": parse_pool(a.pool)}
    except UserError as err:
        ap.error(str(err))
    if not inits or set(inits) - {"teacher", "random"}:
        ap.error(f"--inits takes teacher, random or both, got {a.inits!r}")
    cfg = {**data_lib.DATA_DEFAULTS, "name": "fashion-mnist"}
    full, test = data_lib.load(cfg, "train"), data_lib.load(cfg, "test")
    seeds, lrs = [int(s) for s in a.seeds.split(",")], [float(r) for r in a.lrs.split(",")]
    ratios = [float(r) for r in a.backbone_lr_ratios.split(",")]
    candidates = [(lr, ratio) for lr in lrs for ratio in ratios]
    train = {seed: data_lib.labelled(full, a.labels, seed) for seed in seeds}

    def named(lr, ratio):
        return f"lr {lr:g}" + (f", backbone x {ratio:g}" if ratio != 1 else "")

    results, chosen = {}, {}
    val = validation(full, a.labels, seeds) if len(candidates) > 1 else None
    for init in inits:
        chosen[init] = candidates[0]
        if val is not None:
            scores, tested = {}, {}
            for lr, ratio in candidates:
                net, loss, _ = run(init, a.t, seeds[0], train[seeds[0]], lr=lr, teacher_path=a.teacher, head=a.head,
                                   backbone_lr_ratio=ratio, **readout)
                key = f"{init}_val_lr{lr:g}" + (f"_ratio{ratio:g}" if len(ratios) > 1 else "")
                scores[lr, ratio] = results[key] = accuracy(net, val)
                tested[lr, ratio] = accuracy(net, test)  # kept for the chosen pair only: the choice never sees it
                print(f"{init} init, {named(lr, ratio)}, seed {seeds[0]}: validation accuracy "
                      f"{scores[lr, ratio]:.4f} (final train loss {loss:.3f})", flush=True)
            chosen[init] = max(scores, key=scores.get)
            results[f"{init}_seed{seeds[0]}"] = tested[chosen[init]]
        for seed in seeds:
            if f"{init}_seed{seed}" in results:
                continue
            lr, ratio = chosen[init]
            net, loss, probed = run(init, a.t, seed, train[seed], lr=lr, teacher_path=a.teacher, head=a.head,
                                    test=test, backbone_lr_ratio=ratio, **readout)
            results[f"{init}_seed{seed}"] = acc = accuracy(net, test)
            if probed is not None:
                results[f"{init}_probe_seed{seed}"] = probed
            alone = "" if probed is None else f", the probe head alone {probed:.4f}"
            print(f"{init} init, {named(lr, ratio)}, seed {seed}: test accuracy {acc:.4f}{alone} (final train loss "
                  f"{loss:.3f})", flush=True)
    for init in inits:
        accs = torch.tensor([results[f"{init}_seed{seed}"] for seed in seeds])
        spread = f" +/- {100 * accs.std():.2f}" if len(accs) > 1 else ""
        print(f"{init} init ({named(*chosen[init])}): {100 * accs.mean():.2f}{spread}")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"teacher": a.teacher, "t": a.t, "labels": a.labels, "head": a.head, "tap": a.tap, "pool": a.pool,
                       "lr": {init: lr for init, (lr, _) in chosen.items()},
                       "backbone_lr_ratio": {init: ratio for init, (_, ratio) in chosen.items()}, **results},
                      fh, indent=2)


if __name__ == "__main__":
    main()
