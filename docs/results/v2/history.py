"""The v2 teacher's whole training on one step axis: the run from scratch (constant rate) and its tail (a warm start
from that run's step-70,000 EMA, decaying to 0), drawn for the model card as loss.png and probes.png.

Writes teacher-v2/history.csv (the training loss averaged over each 500 steps, and the in-training probes), so the
figures can be redrawn without the run folders:

    python docs/results/v2/history.py --runs /var/tmp/diffrep-runs/teacher-early /var/tmp/diffrep-runs/teacher-tail70
    python docs/results/v2/history.py           # from the committed history.csv
"""
import argparse
import csv
from collections import defaultdict
from pathlib import Path

from diffrep.report.plots import curves

ROOT = Path(__file__).resolve().parents[3]
HISTORY = ROOT / "docs/results/teacher-v2/history.csv"
CARD = ROOT / "src/diffrep/teachers/fashion-mnist-v2"
TAIL_START, BIN = 70000, 500


def read_runs(scratch: Path, tail: Path) -> list[dict]:
    """Rows of (step, series, value): the binned loss of both runs, then their probes, on the run from scratch's
    steps (the tail's step s is step 70,000 + s; the scratch run's steps after 70,000 are not part of v2)."""
    losses = defaultdict(list)
    for run, offset in ((scratch, 0), (tail, TAIL_START)):
        with (run / "logs/metrics.csv").open() as fh:
            for row in csv.DictReader(fh):
                step = int(row["step"]) + offset
                if row["train/loss"] and (offset or step < TAIL_START):
                    losses[step // BIN * BIN + BIN // 2].append(float(row["train/loss"]))
    rows = [{"step": s, "series": f"train loss (mean over {BIN} steps)", "value": f"{sum(v) / len(v):.5f}"}
            for s, v in sorted(losses.items())]
    for run, offset in ((scratch, 0), (tail, TAIL_START)):
        with (run / "eval.csv").open() as fh:
            for row in csv.DictReader(fh):
                step = int(row["step"]) + offset
                if (offset and step == TAIL_START) or step > TAIL_START and not offset:
                    continue  # the tail's step 0 is the scratch run's step 70,000
                rows.append({"step": step, "series": f"{row['tap']} {row['pool']}, {row['labels']} labels",
                             "value": f"{100 * float(row['accuracy']):.2f}"})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs=2, type=Path, metavar=("SCRATCH", "TAIL"))
    args = parser.parse_args()
    if args.runs:
        rows = read_runs(*args.runs)
        with HISTORY.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, ["step", "series", "value"])
            writer.writeheader()
            writer.writerows(rows)
    rows = list(csv.DictReader(HISTORY.open()))
    series = defaultdict(lambda: ([], []))
    for row in rows:
        series[row["series"]][0].append(int(row["step"]))
        series[row["series"]][1].append(float(row["value"]))
    loss = {k: v for k, v in series.items() if k.startswith("train loss")}
    probes = {k: v for k, v in series.items() if not k.startswith("train loss")}
    title = f"constant lr to step {TAIL_START:,}, then a warm restart decaying to 0"
    curves(loss, CARD / "loss.png", "training step", "epsilon MSE", title)
    curves(probes, CARD / "probes.png", "training step", "linear-probe test accuracy (%)", title)
    print(f"wrote {CARD / 'loss.png'} and {CARD / 'probes.png'} from {len(rows)} rows of {HISTORY}")


if __name__ == "__main__":
    main()
