"""The LP-FT table from run.sh's folders: test accuracy (%) per student and head, mean +/- std over seeds.

    python docs/results/lpft-v1/summarise.py [RUNS]   # writes results.md and results.csv beside this file
"""
import csv
import json
import statistics
import sys
from pathlib import Path

ROWS = {"r18-random": "resnet18, random init", "r18-dense2": "resnet18, 5 epochs + dense layer2 hint",
        "r18-dense2-l1": "resnet18, 5 epochs + dense layer2 + layer1 hints",
        "mb-random": "mobilenet_v2, random init", "mb-shipped": "mobilenet_v2, the shipped student (5 epochs, pooled)"}
HEADS = {"random": "random head (the table's)", "probe": "LP-FT (probe head)"}


def main(runs: Path, here: Path) -> None:
    records = []
    for head in HEADS:
        for row in ROWS:
            for path in sorted((runs / head / row).glob("seed*/metrics.json")):
                m = json.loads(path.read_text())
                records.append({"head": head, "student": row, "seed": int(path.parent.name[4:]),
                                "test_accuracy": m["test_accuracy"],
                                "probe_test_accuracy": m.get("probe_test_accuracy")})
    with open(here / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)

    def cell(row: str, head: str, key: str = "test_accuracy") -> str:
        values = [100 * r[key] for r in records if r["student"] == row and r["head"] == head and r[key] is not None]
        if not values:
            return "-"
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.2f} +/- {spread:.2f} ({len(values)})"

    lines = ["| student | " + " | ".join(HEADS.values()) + " | the probe head alone |", "|---" * 4 + "|"]
    lines += [f"| {name} | " + " | ".join(cell(row, h) for h in HEADS)
              + f" | {cell(row, 'probe', 'probe_test_accuracy')} |" for row, name in ROWS.items()]
    (here / "results.md").write_text("Test accuracy (%) at 1% labels (600 images), all 10k test images, mean +/- std "
                                     "(seeds)\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/var/tmp/diffrep-runs/lpft"), Path(__file__).parent)
