"""Three policy runs on one machine, against distillation steps: the mean t the policy draws, and the reward head's
cross-entropy on the images it trains on and on the images the policy's reward is read from (the same images except
with --policy.reward_holdout). From the runs' logs:  python policy_plot.py  -> policy.png"""
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

here = Path(__file__).parent
runs = {"shared rate (baseline row)": here / "baseline_distill_log.csv",
        "policy at 0.1 x rate": here.parent / "slow-policy" / "distill_log.csv",
        "0.1 x rate, reward on held-out labels": here / "holdout_distill_log.csv"}
fig, (t_ax, ce_ax) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
for i, (name, log) in enumerate(runs.items()):
    rows = [r for r in csv.DictReader(log.open()) if r["loss/head"]]
    steps = [int(r["step"]) for r in rows]
    t_ax.plot(steps, [float(r["t/mean"]) for r in rows], lw=1.2, color=f"C{i}", label=name)
    ce_ax.plot(steps, [float(r["loss/head"]) for r in rows], lw=1.2, color=f"C{i}", label=f"{name}: head's own")
    if "held-out" in name:
        ce_ax.plot(steps, [-float(r["policy/reward"]) for r in rows], lw=1.2, ls="--", color=f"C{i}",
                   label=f"{name}: the reward's (-reward)")
t_ax.set(xlabel="distillation step", ylabel="mean t the policy draws")
ce_ax.set(yscale="log", xlabel="distillation step", ylabel="reward head cross-entropy (log)")
for ax in (t_ax, ce_ax):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.suptitle("REINFORCE policies at 1% labels (dense layer2 hint, 5 epochs, baseline): a reward on labels the head "
             "never fits moves the policy to small t, where it collapses")
fig.savefig(here / "policy.png", dpi=110)
