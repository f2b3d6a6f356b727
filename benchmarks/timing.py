"""What the benchmarks share: the options of a step benchmark, alternating timing with medians, and the JSON they
print and save."""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch


RESULTS = Path(__file__).resolve().parent / "results"


def step_parser(doc: str, batch: int, repeats: int) -> argparse.ArgumentParser:
    """--batch, --repeats and --out (default benchmarks/results/), with the script's docstring as its help."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser


def alternating_medians(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each step, after one warm-up call each. The steps run in turn within every
    repeat, so a slow spell of the machine hits all of them alike."""
    for step in steps.values():
        step()
    times = {key: [] for key in steps}
    for _ in range(repeats):
        for key, step in steps.items():
            start = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


def machine() -> dict:
    return {"threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}


def save_result(result: dict, out: Path, name: str) -> Path:
    """Print the result and write it to OUT/NAME.json."""
    print(json.dumps(result, indent=2))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path}")
    return path
