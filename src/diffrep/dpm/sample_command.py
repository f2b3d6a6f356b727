"""`diffrep dpm sample`: a PNG grid from a DDPM (default: the shipped teacher)."""
from __future__ import annotations

import time
from pathlib import Path

from diffrep.dpm.sample import sample, save_grid
from diffrep.options import dpm as options
from diffrep.run_dir import write_metrics
from diffrep.teacher import teacher_from_config
from diffrep.teacher.schedule import check_sampler

DEFAULTS = options.SAMPLE


def run(cfg: dict) -> dict:
    check_sampler(cfg["sampler"])
    teacher = teacher_from_config(cfg["teacher"])
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    images = sample(teacher.unet, teacher.scheduler, cfg["n"], cfg["sampler"], cfg["steps"], cfg["seed"])
    path = save_grid(images, out / "samples.png", nrow=cfg["nrow"])
    seconds = time.perf_counter() - start
    print(f"wrote {len(images)} {cfg['sampler']} samples to {path} in {seconds:.1f} s")
    return write_metrics(out, {"samples": len(images), "seconds": seconds})
