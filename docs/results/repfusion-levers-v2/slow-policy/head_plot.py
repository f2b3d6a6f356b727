"""The reward head's cross-entropy (minus the policy's reward) and the policy's mean t against distillation steps, from
distill_log.csv (the slow-policy run's logs/metrics.csv):  python head_plot.py  -> head.png"""
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

here = Path(__file__).parent
rows = [r for r in csv.DictReader((here / "distill_log.csv").open()) if r["loss/head"]]
steps = [int(r["step"]) for r in rows]
fig, (ce, t) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
ce.plot(steps, [float(r["loss/head"]) for r in rows], lw=1)
ce.set(yscale="log", xlabel="distillation step", ylabel="reward head CE on the 600 labelled images (log)")
t.plot(steps, [float(r["t/mean"]) for r in rows], lw=1, color="C1")
t.set(xlabel="distillation step", ylabel="mean t the policy draws")
for ax in (ce, t):
    ax.grid(alpha=0.3)
fig.suptitle("policy at 0.1 x the student's rate: the head learns the labels by heart, the policy stops")
fig.savefig(here / "head.png", dpi=110)
