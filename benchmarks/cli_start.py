"""Seconds from `diffrep ...` to its answer, for --help and for an option error, per command (median of 5 starts
of a fresh interpreter each), against the naive start that imports the command's module (torch, lightning,
diffusers) before it parses anything.

    python benchmarks/cli_start.py [--repeats 5] [--out benchmarks/results]

The target is <= 2 s on 2 CPU cores; the ratio is naive / diffrep in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from diffrep import cli

HERE = Path(__file__).resolve().parent
# an option error per command: an out-of-range value of an option every command has, or of its own
ERRORS = {"pdae compare": ["--target_mse", "0"], "experiment repfusion": ["--seeds", "[-1]"]}


def seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--note", default="", help="saved in the JSON: how loaded the machine was, say")
    args = ap.parse_args()
    rows = {}
    for words, (module, _, _, _) in cli.CONFIGURED.items():
        name = " ".join(words)
        error = ERRORS.get(name, ["--seed", "-1"])
        ours = [sys.executable, "-m", "diffrep.cli", *words]
        naive_code = f"import sys, {module}; from diffrep.cli import main; sys.exit(main(sys.argv[1:]))"
        naive = [sys.executable, "-c", naive_code, *words]
        times = {"help": [], "error": [], "naive_help": []}
        for _ in range(args.repeats):  # alternate, so a slow spell of the machine hits every path alike
            times["help"].append(seconds([*ours, "--help"]))
            times["error"].append(seconds([*ours, *error]))
            times["naive_help"].append(seconds([*naive, "--help"]))
        medians = {key: statistics.median(values) for key, values in times.items()}
        rows[name] = {**{f"{key}_s": round(value, 3) for key, value in medians.items()},
                      "ratio_naive_over_help": round(medians["naive_help"] / medians["help"], 1)}
        print(f"{name:22s} --help {medians['help']:.2f} s, option error {medians['error']:.2f} s, "
              f"naive --help {medians['naive_help']:.2f} s", flush=True)
    worst = max(max(row["help_s"], row["error_s"]) for row in rows.values())
    result = {"benchmark": "cli_start", "repeats": args.repeats, "cpus": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "note": args.note,
              "worst_s": worst, "target_s": 2.0,
              "commands": rows}
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cli_start.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out / 'cli_start.json'}")


if __name__ == "__main__":
    main()
