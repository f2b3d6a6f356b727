"""The dense resnet18 student of a stronger teacher, fine-tuned with a slow backbone, beside v1's and random init:
test accuracy (%) at 1% labels, mean +/- std over seeds, and the gain over random init at its best rate (1 x lr),
paired by seed. The v1 rows come from docs/results/backbone-lr-v1/results.csv.

    python docs/results/dense-slow-v2/summarise.py [RUNS]   # writes results.md and results.csv beside this file
"""
import csv
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = {"r18-random": "resnet18, random init", "r18-dense2": "dense layer2 hint, 5 epochs, v1 teacher",
         "v2-r18-dense2": "dense layer2 hint, 5 epochs, teacher at step 45,000"}


def main(runs: Path) -> None:
    records = [{**r, "ratio": float(r["ratio"]), "seed": int(r["seed"]), "test_accuracy": float(r["test_accuracy"])}
               for r in csv.DictReader((HERE.parent / "backbone-lr-v1" / "results.csv").open())
               if r["student"] in NAMES]
    for path in sorted(runs.glob("ratio*/r18-dense2/seed*/metrics.json")):
        records.append({"ratio": float(path.parts[-4][5:]), "student": "v2-r18-dense2",
                        "seed": int(path.parent.name[4:]),
                        "test_accuracy": json.loads(path.read_text())["test_accuracy"]})
    with open(HERE / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["ratio", "student", "seed", "test_accuracy"])
        writer.writeheader()
        writer.writerows(records)
    ratios = sorted({r["ratio"] for r in records}, reverse=True)
    by = {(r["student"], r["ratio"], r["seed"]): 100 * r["test_accuracy"] for r in records}
    random_best = {s: v for (student, ratio, s), v in by.items() if student == "r18-random" and ratio == 1.0}

    def cell(student: str, ratio: float) -> str:
        v = {s: acc for (name, r, s), acc in by.items() if name == student and r == ratio}
        if not v:
            return "-"
        text = f"{statistics.mean(v.values()):.2f} +/- {statistics.stdev(v.values()):.2f}"
        gain = [v[s] - random_best[s] for s in v if s in random_best]
        return text + (f" ({statistics.mean(gain):+.2f})" if student != "r18-random" else "")

    lines = ["| student | " + " | ".join(f"backbone at {r:g} x lr" for r in ratios) + " |",
             "|---" * (len(ratios) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cell(student, r) for r in ratios) + " |" for student, name in NAMES.items()]
    (HERE / "results.md").write_text(
        "Test accuracy (%) at 1% labels (600 images), all 10k test images, mean +/- std over seeds 0, 1, 2; in "
        "brackets the gain over random init at 1 x lr (its best rate), paired by seed.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/var/tmp/diffrep-runs/dense-slow-v2"))
