"""The posterior-mean gap with G against without, as a ratio of sums over t >= 250, t >= 500 and all t, against the
chain's steps: from gap-STEPS.csv (each `diffrep pdae gap`'s gap.csv at that step) -> gap_steps.csv, gap_steps.png.

    python docs/results/pdae-fashion-mnist-v2/gap_steps.py
"""
import csv
from pathlib import Path

from diffrep.report.plots import curves

here = Path(__file__).parent
FROM = (250, 500, 0)
rows = []
for path in sorted(here.glob("gap-*.csv"), key=lambda p: int(p.stem.split("-")[1])):
    gap = list(csv.DictReader(path.open()))
    ratio = {lo: sum(float(r["gap_pdae"]) for r in gap if int(r["t"]) >= lo)
             / sum(float(r["gap_dpm"]) for r in gap if int(r["t"]) >= lo) for lo in FROM}
    rows.append({"step": int(path.stem.split("-")[1]), **{f"ratio_t_ge_{lo}": f"{ratio[lo]:.4f}" for lo in FROM}})
with (here / "gap_steps.csv").open("w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
steps = [r["step"] for r in rows]
series = {f"t >= {lo}" if lo else "all t": (steps, [float(r[f"ratio_t_ge_{lo}"]) for r in rows]) for lo in FROM}
series["the bar over t >= 250 (0.5: the gap halved)"] = (steps, [0.5] * len(steps))
curves(series, here / "gap_steps.png", "training step", "posterior-mean gap, with G / without",
       "PDAE on fashion-mnist-v2: how much of the gap G closes")
for r in rows:
    print(r)
