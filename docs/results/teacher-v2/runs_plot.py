"""Issue 14's teacher runs, probe against images seen: v1's lineage (the long cosine run to step 2,000, then the
tail that finished its decay) and the wider UNet from scratch. One panel per probe (mid_block, t = 10, clean).

    python docs/results/teacher-v2/runs_plot.py   # reads the *-eval.csv beside it, writes runs.png
"""
import csv
from pathlib import Path

from diffrep.report.plots import plt

HERE = Path(__file__).resolve().parent
V1_IMAGES = 6100 * 32  # v1's own training, before any of these runs
# name: (csv, images seen before the csv's step 0)
RUNS = {"v1 continued, cosine (long run, lost at step 2,000)": ("long-run-eval.csv", V1_IMAGES),
        "v1 continued: the tail from the step-2,000 EMA": ("tail-from-2000-eval.csv", V1_IMAGES + 2000 * 32),
        "wide UNet (6.09M) from scratch, cosine": ("wide-eval.csv", 0)}
PROBES = [("gap", "600"), ("gap", "10000"), ("grid:2", "600"), ("grid:2", "10000")]

fig, axes = plt.subplots(1, len(PROBES), figsize=(17, 4.2), layout="constrained")
for ax, (pool, labels) in zip(axes, PROBES):
    for i, (label, (name, offset)) in enumerate(RUNS.items()):
        if not (HERE / name).is_file():
            continue
        rows = [r for r in csv.DictReader((HERE / name).open()) if r["pool"] == pool and r["labels"] == labels]
        ax.plot([(offset + 32 * int(r["step"])) / 1000 for r in rows], [100 * float(r["accuracy"]) for r in rows],
                marker="o", color=f"C{i}", label=label)
    ax.axvline(V1_IMAGES / 1000, color="grey", ls=":", lw=1)
    ax.set(title=f"{pool}, {labels} labels", xlabel="images seen (thousands; dotted: v1 as shipped)",
           ylabel="test accuracy (%)")
    ax.grid(alpha=0.3)
axes[0].legend(fontsize=7)
fig.suptitle("Teacher v2 candidates: linear probes of the EMA mid_block features (t = 10, clean input, 5,000 test "
             "images)")
fig.savefig(HERE / "runs.png", dpi=110)
print(f"wrote {HERE / 'runs.png'}")
