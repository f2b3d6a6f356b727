"""What the two policies of distillation seed 1 chose, checkpoint by checkpoint (every 100 steps), on 2,000 fixed
Fashion-MNIST training images: the mean t they draw, the entropy of one image's distribution over t (averaged) and of
the distribution pooled over all images, the share of images whose most likely t is below 50, and the largest logit.
The runs keep only their last checkpoint, so a watcher kept each checkpoint's policy weights as SNAPSHOTS/RUN/step-N.pt
(its script: snapshot_policy.py, beside this one).

    python policy_snapshots.py /var/tmp/diffrep-runs/policy-distill-seed1/snapshots   # -> policy_snapshots.{csv,png}
"""
import csv
import sys
from pathlib import Path

import matplotlib
import torch
from torch.distributions import Categorical

from diffrep.data.imageset import load, stratified_subset, to_float
from diffrep.repfusion.policy import PolicyNet

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

here = Path(__file__).parent
RUNS = {"policy_5_epochs_dense_layer2_baseline": "shared rate (baseline row)",
        "policy_5_epochs_dense_layer2_baseline_slow_policy_reward_holdout": "0.1 x rate, reward on held-out labels"}
data = load({"name": "fashion-mnist", "root": None, "resolution": 32, "channels": 1}, "train")
images = to_float(data.images[stratified_subset(data.labels, 2000, 0)])
t = torch.arange(1000, dtype=torch.float)
rows = []
for run in RUNS:
    for path in sorted((Path(sys.argv[1]) / run).glob("step-*.pt")):
        snapshot = torch.load(path)
        policy = PolicyNet(1, 32, 1000)
        policy.load_state_dict({k.removeprefix("policy."): v for k, v in snapshot["policy"].items()})
        with torch.no_grad():
            logits = policy(images)
        p = logits.softmax(-1)
        rows.append({"run": run, "step": snapshot["step"], "mean_t": (p @ t).mean().item(),
                     "image_entropy": Categorical(logits=logits).entropy().mean().item(),
                     "pooled_entropy": Categorical(probs=p.mean(0)).entropy().item(),
                     "share_argmax_below_50": (logits.argmax(-1) < 50).float().mean().item(),
                     "mode_t": p.mean(0).argmax().item(), "max_logit": logits.max().item()})
with (here / "policy_snapshots.csv").open("w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
for i, (run, name) in enumerate(RUNS.items()):
    mine = [r for r in rows if r["run"] == run]
    steps = [r["step"] for r in mine]
    axes[0].plot(steps, [r["mean_t"] for r in mine], color=f"C{i}", label=name)
    axes[1].plot(steps, [r["image_entropy"] for r in mine], color=f"C{i}", label=f"{name}: per image")
    axes[1].plot(steps, [r["pooled_entropy"] for r in mine], color=f"C{i}", ls="--", label=f"{name}: pooled")
    axes[2].plot(steps, [r["max_logit"] for r in mine], color=f"C{i}", label=name)
axes[0].set(xlabel="distillation step", ylabel="mean t drawn (2,000 train images)")
axes[1].set(xlabel="distillation step", ylabel="entropy over t (nats; uniform 6.91)")
axes[2].set(xlabel="distillation step", ylabel="largest logit", yscale="symlog")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.suptitle("REINFORCE policies, distillation seed 1, from their checkpoints every 100 steps")
fig.savefig(here / "policy_snapshots.png", dpi=110)
