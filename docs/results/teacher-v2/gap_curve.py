"""Issue 14's main target against training images: the teacher-encoder fine-tune gap at 1% labels (trained minus
random weights, 3 seeds, AdamW 1e-3, t = 10) of every teacher measured with the same protocol.

Each teacher's seeds are paired with the random-weight arm's seeds of v1's run (the same architecture, seeds and
code, so the same network before training), so the gap is a mean of paired differences. The "v1's recipe from
scratch" series re-runs v1's own training (constant lr, batch 32, seed 0) and exports its EMA model along the way;
the line is a least-squares fit of the gap against log2(images) over that series and v1. The right panel is the
issue's cheap proxy for the same models: a linear probe of the frozen mid_block features (t = 10, clean input) on
600 labelled images (`--data.seed 0`), tested on all 10k test images (`proxy.csv`, from `diffrep probe --teacher
MODEL --timesteps 10 --taps mid_block --inputs clean --pool gap,grid:2 --data.labels 0.01 --random_teacher false`).

    python docs/results/teacher-v2/gap_curve.py   # reads encoder-*.json and proxy.csv beside it, writes gap_curve.png
"""
import csv
import json
from pathlib import Path

import numpy as np

from diffrep.report.plots import plt

HERE = Path(__file__).resolve().parent
V1 = 6100 * 32
SEEDS = (0, 1, 2)
RANDOM_ARM = "../repfusion-pilot/teacher_encoder_finetune.json"  # v1's run, with both arms
SCRATCH, SHIPPED, CONTINUED = "v1's recipe from scratch", "v1 (shipped)", "v1 continued, cosine"
TAIL = "v2: then 8k steps to lr 0"
STEPS = (500, 1500, 3000, 12200, 24400, 45000, 70000)  # the exports of the run from scratch that were measured
# (file, images seen, series)
POINTS = [*[(f"encoder-early-{step}.json", step * 32, SCRATCH) for step in STEPS],
          (RANDOM_ARM, V1, SHIPPED),
          ("encoder-v1-step2000.json", V1 + 2000 * 32, CONTINUED),
          ("encoder-v1-tail.json", V1 + 3500 * 32, CONTINUED),
          ("encoder-v2.json", (70000 + 8000) * 32, TAIL)]


def images_axis(ax, ticks: list[int], **labels) -> None:
    """A log axis of images seen (thousands), ticked at `ticks`."""
    ax.set(xscale="log", xlabel="images seen in training (thousands)", **labels)
    ax.set_xticks(ticks, [f"{k:,}" for k in ticks])
    ax.minorticks_off()
    ax.grid(alpha=0.3)


def main():
    random_arm = json.loads((HERE / RANDOM_ARM).read_text())
    rows = []
    for name, images, series in POINTS:
        if not (HERE / name).is_file():
            continue
        result = json.loads((HERE / name).read_text())
        gaps = np.array([result[f"teacher_seed{s}"] - random_arm[f"random_seed{s}"] for s in SEEDS]) * 100
        rows.append((images, series, gaps.mean(), gaps.std(ddof=1), 100 * np.mean(
            [result[f"teacher_seed{s}"] for s in SEEDS])))
    print(f"{'images':>9}  {'series':<26} {'accuracy':>8}  gap (trained - random, +/- std over seeds)")
    for images, series, gap, spread, acc in sorted(rows):
        print(f"{images:>9,}  {series:<26} {acc:8.2f}  {gap:+.2f} +/- {spread:.2f}")
    fit = [(np.log2(images), gap) for images, series, gap, _, _ in rows if series in (SCRATCH, SHIPPED)]
    slope, intercept = np.polyfit(*zip(*fit), 1)
    target = 2 ** ((7 - intercept) / slope)
    print(f"fit over v1's recipe: {slope:+.2f} points per doubling of the images; it reaches +7 at "
          f"{target / 1e6:.1f}M images ({target / V1:.0f}x v1, {target / 32:,.0f} steps at batch 32)")

    fig, (ax, proxy_ax) = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained", width_ratios=(3, 2))
    order = list(dict.fromkeys(r[1] for r in rows))  # one colour per series, in both panels
    for i, series in enumerate(order):
        pts = [r for r in rows if r[1] == series]
        ax.errorbar([r[0] / 1000 for r in pts], [r[2] for r in pts], yerr=[r[3] for r in pts], marker="o",
                    capsize=3, ls="-" if len(pts) > 1 else "none", color=f"C{i}", label=series)
    xs = np.array([min(r[0] for r in rows), max(r[0] for r in rows)])
    ax.plot(xs / 1000, slope * np.log2(xs) + intercept, color="grey", ls=":", lw=1,
            label=f"fit: {slope:+.2f} points per doubling")
    ax.axhline(7, color="C3", ls="--", lw=1, label="issue 14's target (+7)")
    ticks = [16 * 2 ** k for k in range(int(np.log2(xs[1] / 16000)) + 2)]
    images_axis(ax, ticks, ylabel="fine-tune gap at 1% labels (points)",
                title="the target: teacher-encoder fine-tune gap (trained - random weights)")
    ax.legend(fontsize=8)
    proxy = list(csv.DictReader((HERE / "proxy.csv").open())) if (HERE / "proxy.csv").is_file() else []
    for i, series in enumerate(order):
        for pool, marker in (("gap", "o"), ("grid:2", "s")):
            pts = [r for r in proxy if r["series"] == series and r["pool"] == pool]
            proxy_ax.plot([int(r["images"]) / 1000 for r in pts], [100 * float(r["accuracy"]) for r in pts],
                          marker=marker, color=f"C{i}", ls="-" if len(pts) > 1 else "none", label=f"{series}, {pool}")
    images_axis(proxy_ax, ticks, ylabel="test accuracy (%)", title="the proxy: 600-label probe of the frozen mid_block")
    proxy_ax.legend(fontsize=7)
    fig.savefig(HERE / "gap_curve.png", dpi=110)
    print(f"wrote {HERE / 'gap_curve.png'}")


if __name__ == "__main__":
    main()
