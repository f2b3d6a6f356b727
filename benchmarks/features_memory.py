"""Peak memory of `diffrep features` at 10k and 60k images, and what stored features give the probe.

The grid: the shipped teacher, taps mid_block and down_blocks.2, t = 10, clean input, pools gap and grid:2, npy.
Every command runs in a fresh process; its peak RSS comes from os.wait4 (that child's own rusage).

1. `diffrep features --splits test`: Fashion-MNIST's 10k test images (N = 10k).
2. `diffrep features --splits train,test`: the 60k train images, then the 10k test images (N = 60k).
   Were the features held in memory, 2. would need 60k x 1,280 floats (293 MiB) more than 1.; the images
   themselves are in memory in both (uint8, 1 KiB each).
3. `diffrep probe --features <2.>` against the live `diffrep probe` of the same grid: the same accuracies?
4. `diffrep features --dtype float16` of the same grid, probed: the accuracy difference to float32.

    python benchmarks/features_memory.py [--work /tmp/diffrep-features-bench] [--out benchmarks/results]
    (smaller: --teacher PATH --data digits --train_size 300 --test_size 100)
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from timing import machine, save_result  # benchmarks/timing.py

HERE = Path(__file__).resolve().parent
GRID = ["--taps", "mid_block,down_blocks.2", "--timesteps", "10", "--inputs", "clean", "--pool", "gap,grid:2"]


def diffrep(args: list[str], log: Path) -> dict:
    """Run `diffrep ARGS` in a fresh process: wall seconds and that process's peak RSS (MiB)."""
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "diffrep.cli", *args], stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"diffrep {' '.join(args)} failed ({proc.returncode}); see {log}")
    return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def accuracies(run: Path) -> dict[str, float]:
    return {f"{r['teacher']} {r['tap']} {r['pool']}".strip(): float(r["accuracy"])
            for r in csv.DictReader((run / "probe.csv").open())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--note", default="", help="saved in the JSON: how loaded the machine was, say")
    parser.add_argument("--work", type=Path, default=Path("/tmp/diffrep-features-bench"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--teacher", default=None, help="default: the shipped teacher")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--train_size", default=None)
    parser.add_argument("--test_size", default=None)
    args = parser.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    data = ["--data", args.data] + (["--teacher", args.teacher] if args.teacher else [])
    data += [arg for key in ("train_size", "test_size") if getattr(args, key)
             for arg in (f"--data.{key}", getattr(args, key))]
    store = {name: args.work / name for name in ("test10k", "fp32", "fp16")}
    runs = {
        "features_test_10k": diffrep(["features", *data, *GRID, "--splits", "test", "--out", str(store["test10k"])],
                                     args.work / "features_test_10k.log"),
        "features_train_60k_and_test": diffrep(["features", *data, *GRID, "--out", str(store["fp32"])],
                                               args.work / "features_fp32.log"),
        "probe_stored_fp32": diffrep(["probe", "--features", str(store["fp32"]), "--out", str(args.work / "p32")],
                                     args.work / "probe_stored_fp32.log"),
        "probe_live": diffrep(["probe", *data, *GRID, "--random_teacher", "false", "--out", str(args.work / "live")],
                              args.work / "probe_live.log"),
        "features_fp16": diffrep(["features", *data, *GRID, "--dtype", "float16", "--out", str(store["fp16"])],
                                 args.work / "features_fp16.log"),
        "probe_stored_fp16": diffrep(["probe", "--features", str(store["fp16"]), "--out", str(args.work / "p16")],
                                     args.work / "probe_stored_fp16.log"),
    }
    live, fp32, fp16 = (accuracies(args.work / name) for name in ("live", "p32", "p16"))
    sizes = {name: json.loads((path / "manifest.json").read_text())["splits"] for name, path in store.items()}
    result = {
        "benchmark": "features_memory", **machine(),
        "note": args.note,
        "grid": " ".join(GRID), "data": args.data, "splits": {name: {s: v["n"] for s, v in splits.items()}
                                                              for name, splits in sizes.items()},
        "runs": runs,
        "store_bytes": {name: json.loads((path / "metrics.json").read_text())["bytes"] for name, path in store.items()},
        "peak_rss_mib_10k": runs["features_test_10k"]["peak_rss_mib"],
        "peak_rss_mib_60k": runs["features_train_60k_and_test"]["peak_rss_mib"],
        "accuracy_live": live, "accuracy_stored_fp32": fp32, "accuracy_stored_fp16": fp16,
        "stored_equals_live": fp32 == live,
        "max_abs_difference_stored_vs_live_points": round(max(100 * abs(fp32[k] - live[k]) for k in live), 4),
        "max_abs_difference_fp16_vs_fp32_points": round(max(100 * abs(fp16[k] - fp32[k]) for k in fp32), 4),
    }
    save_result(result, args.out, "features_memory")


if __name__ == "__main__":
    main()
