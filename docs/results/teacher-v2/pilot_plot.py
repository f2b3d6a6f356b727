"""The recipe pilots' probe curves against training steps, one panel per probe (tap mid_block, t = 10, clean).

    python docs/results/teacher-v2/pilot_plot.py   # reads pilot-*-eval.csv beside it, writes pilots.png
"""
import csv
from pathlib import Path

from diffrep.report.plots import plt

HERE = Path(__file__).resolve().parent
RUNS = {"constant lr (v1's recipe)": "constant-none", "cosine decay": "cosine-none",
        "cosine + Min-SNR-5": "cosine-min_snr"}
PROBES = [("gap", "600"), ("gap", "10000"), ("grid:2", "600"), ("grid:2", "10000")]

fig, axes = plt.subplots(1, len(PROBES), figsize=(16, 3.8), layout="constrained")
for ax, (pool, labels) in zip(axes, PROBES):
    for i, (label, name) in enumerate(RUNS.items()):
        rows = [r for r in csv.DictReader((HERE / f"pilot-{name}-eval.csv").open())
                if r["pool"] == pool and r["labels"] == labels]
        ax.plot([int(r["step"]) for r in rows], [100 * float(r["accuracy"]) for r in rows], marker="o",
                color=f"C{i}", label=label)
    ax.set(title=f"{pool}, {labels} labels", xlabel="steps after v1 (batch 32)", ylabel="test accuracy (%)")
    ax.grid(alpha=0.3)
axes[0].legend(fontsize=8)
fig.suptitle("1,000-step pilots from the v1 teacher: linear probes of the EMA mid_block features (t = 10, clean)")
fig.savefig(HERE / "pilots.png", dpi=110)
print(f"wrote {HERE / 'pilots.png'}")
