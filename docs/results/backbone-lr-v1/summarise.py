"""The discriminative fine-tuning table from run.sh's folders: test accuracy (%) per student and backbone rate
ratio, mean +/- std over seeds, and each distilled student's gain over the random init of its architecture. Ratio 1
is the RepFusion table's fine-tuning, read from docs/results/lpft-v1/results.csv (its "random" head rows).

    python docs/results/backbone-lr-v1/summarise.py [RUNS]   # writes results.md and results.csv beside this file
"""
import csv
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROWS = {"r18-random": "resnet18, random init", "r18-dense2": "resnet18, 5 epochs + dense layer2 hint",
        "mb-random": "mobilenet_v2, random init", "mb-shipped": "mobilenet_v2, the shipped student (5 epochs, pooled)"}
RANDOM = {"r18-dense2": "r18-random", "mb-shipped": "mb-random"}


def main(runs: Path) -> None:
    table = csv.DictReader((HERE.parent / "lpft-v1" / "results.csv").open())
    records = [{"ratio": 1.0, "student": r["student"], "seed": int(r["seed"]),
                "test_accuracy": float(r["test_accuracy"])} for r in table
               if r["head"] == "random" and r["student"] in ROWS]
    for folder in sorted(runs.glob("ratio*")):
        for row in ROWS:
            for path in sorted((folder / row).glob("seed*/metrics.json")):
                records.append({"ratio": float(folder.name[5:]), "student": row, "seed": int(path.parent.name[4:]),
                                "test_accuracy": json.loads(path.read_text())["test_accuracy"]})
    with open(HERE / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    ratios = sorted({r["ratio"] for r in records}, reverse=True)

    def values(row: str, ratio: float) -> dict:
        return {r["seed"]: 100 * r["test_accuracy"] for r in records if r["student"] == row and r["ratio"] == ratio}

    def cell(row: str, ratio: float) -> str:
        v = values(row, ratio)
        if not v:
            return "-"
        text = f"{statistics.mean(v.values()):.2f} +/- {statistics.stdev(v.values()) if len(v) > 1 else 0:.2f}"
        base = values(RANDOM.get(row, ""), ratio)
        paired = [v[s] - base[s] for s in v if s in base]
        return text + (f" ({statistics.mean(paired):+.2f})" if row in RANDOM and paired else "") + f" [{len(v)}]"

    lines = ["| student | " + " | ".join(f"backbone at {r:g} x lr" for r in ratios) + " |",
             "|---" * (len(ratios) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cell(row, r) for r in ratios) + " |" for row, name in ROWS.items()]
    (HERE / "results.md").write_text("Test accuracy (%) at 1% labels (600 images), all 10k test images, mean +/- std "
                                     "(the gain over random init of the same architecture, paired by seed) [seeds]\n\n"
                                     + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/var/tmp/diffrep-runs/backbone-lr"))
