"""`diffrep quickstart`: the main job on the embedded default, in a few minutes on 2 CPU cores.

For now: the shipped teacher's summary and taps (teacher_info.txt) and a sample grid (samples.png).
"""
from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from types import SimpleNamespace

from diffrep.dpm.sample import sample, save_grid
from diffrep.teacher import load_teacher
from diffrep.teacher.info import main as teacher_info
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

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        teacher_info(SimpleNamespace(path=cfg["teacher"], depth=None))
    (out / "teacher_info.txt").write_text(text.getvalue())
    print(teacher.summary())
    print(f"{len(teacher.taps)} taps, listed in {out / 'teacher_info.txt'}")

    s = cfg["samples"]
    grid = save_grid(sample(teacher.unet, teacher.scheduler, s["n"], s["sampler"], s["steps"], cfg["seed"]),
                     out / "samples.png")
    print(f"samples: {grid}")
    seconds = time.perf_counter() - start
    print(f"quickstart finished in {seconds:.0f} s; everything is in {out}/")
    return write_metrics(out, {"seconds": seconds, "taps": len(teacher.taps)})
