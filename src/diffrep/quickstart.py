"""`diffrep quickstart`: the main job on the embedded default, in a few minutes on 2 CPU cores.

For now: the shipped teacher's summary and taps (teacher_info.txt) and a sample grid (samples.png).
"""
from __future__ import annotations

import time
from pathlib import Path

from diffrep.dpm.sample import sample, save_grid
from diffrep.teacher import load_teacher
from diffrep.teacher.info import describe
from diffrep.train import write_metrics

DEFAULTS = {
    "teacher": None,  # default: the shipped Fashion-MNIST teacher
    "samples": {"n": 64, "sampler": "ddim", "steps": 50},
    "seed": 0,
    "out": "out/quickstart",
}


def run(cfg: dict) -> dict:
    start = time.perf_counter()
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    teacher = load_teacher(cfg["teacher"])

    (out / "teacher_info.txt").write_text(describe(teacher) + "\n")
    print(describe(teacher, max_depth=1))
    print(f"(all {len(teacher.taps)} taps, with the modules inside the blocks: {out / 'teacher_info.txt'})")

    s = cfg["samples"]
    grid = save_grid(sample(teacher.unet, teacher.scheduler, s["n"], s["sampler"], s["steps"], cfg["seed"]),
                     out / "samples.png")
    print(f"samples: {grid}")
    seconds = time.perf_counter() - start
    print(f"quickstart finished in {seconds:.0f} s; everything is in {out}/")
    return write_metrics(out, {"seconds": seconds, "taps": len(teacher.taps)})
