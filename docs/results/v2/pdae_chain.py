"""Append one chunk of the v2 PDAE run (a `diffrep pdae fit` folder) to the chain's curves in DOCS, and redraw them.

    python docs/results/v2/pdae_chain.py RUN DOCS
    python docs/results/v2/pdae_chain.py --steps MODEL   # the chain's steps in a saved model (0: none there)

The v2 PDAE trains 10,000 steps in chunks of 2,500, each a warm start (`pdae fit --init`) from the model the chunk
before shipped, on one step axis (the chunk's evaluations record the chain's steps). A chunk's rows replace the
chain's after its first step; its train_seconds are moved past the chain's, so both columns count the whole chain.
"""
import csv
import json
import sys
from pathlib import Path

from diffrep.pdae.autoencoder import CONFIG, chain_steps
from diffrep.report.plots import curves


def read(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open(newline=""))) if path.is_file() else []


def append(chain: list[dict], chunk: list[dict]) -> list[dict]:
    """The chain's rows to the chunk's first step (there the chain's own, of the unrounded model), then the chunk's."""
    first = int(chunk[0]["step"])
    kept = [r for r in chain if int(r["step"]) <= first]
    if not kept or int(kept[-1]["step"]) != first:
        kept.append(chunk[0])
    offset = float(kept[-1]["train_seconds"]) - float(chunk[0]["train_seconds"])
    return kept + [{**r, "train_seconds": f"{float(r['train_seconds']) + offset:.3f}"} for r in chunk[1:]]


def main(run: str, docs: str) -> None:
    run, docs = Path(run), Path(docs)
    docs.mkdir(parents=True, exist_ok=True)
    merged = {}
    for name in ("eval.csv", "z_probe.csv"):
        chunk = read(run / name)
        if not chunk:
            raise SystemExit(f"{run / name}: no rows")
        merged[name] = rows = append(read(docs / name), chunk)
        with (docs / name).open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(chunk[0]))
            writer.writeheader()
            writer.writerows(rows)
    probes, evals = merged["z_probe.csv"], merged["eval.csv"]
    steps = [int(r["step"]) for r in probes]
    curves({"trained encoder (EMA)": (steps, [100 * float(r["z_probe"]) for r in probes]),
            "untrained encoder": (steps, [100 * float(r["untrained_z_probe"]) for r in probes])},
           docs / "z_probe.png", "training step", "linear probe of z, test accuracy (%)",
           "PDAE on fashion-mnist-v2: z probe on 10,000 / 2,000 images")
    curves({"PDAE (EMA)": ([int(r["step"]) for r in evals], [float(r["random_xT_mse"]) for r in evals])},
           docs / "eval.png", "training step", "random-x_T MSE with z (64 test images, DDIM 20)",
           "PDAE on fashion-mnist-v2: decoding a random x_T with z")
    print(f"{docs}: {len(evals)} MSE rows and {len(probes)} probe rows, to step {steps[-1]}")


def steps(model: str) -> int:
    config = Path(model) / CONFIG
    return chain_steps(json.loads(config.read_text())) if config.is_file() else 0


if __name__ == "__main__":
    if sys.argv[1] == "--steps":
        print(steps(sys.argv[2]))
    else:
        main(*sys.argv[1:3])
