"""Images per second of teacher.features(..., taps=["mid_block"]): early exit versus a full pass with hooks.

Two teachers: (a) the shipped Fashion-MNIST teacher, (b) the architecture of google/ddpm-cifar10-32
(35.7M parameters, random weights from the config in fixtures/). Batch 64, random t per image.
The two paths are timed in alternation and the medians compared; FLOPs per image of both paths
(torch's FlopCounterMode) give the machine-independent ceiling of the speed-up.

    python benchmarks/teacher_features.py [--batch 64] [--repeats 5] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from diffusers import UNet2DModel
from torch.utils.flop_counter import FlopCounterMode

from diffrep.teacher import Teacher, load_teacher
from diffrep.teacher.schedule import ddpm_scheduler
from timing import machine, save_result  # benchmarks/timing.py

HERE = Path(__file__).resolve().parent


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def measure(name: str, teacher: Teacher, batch: int, repeats: int) -> dict:
    """Median images/s of both paths, timed in alternation so that machine noise hits both alike."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, teacher.channels, teacher.resolution, teacher.resolution, generator=gen) * 2 - 1
    t = torch.randint(0, teacher.num_timesteps, (batch,), generator=gen)
    paths = {"full": lambda: teacher.features(x, t, ["mid_block"], early_exit=False),
             "early": lambda: teacher.features(x, t, ["mid_block"], early_exit=True)}
    for run in paths.values():  # warm-up
        run()
    times = {key: [] for key in paths}
    for _ in range(repeats):
        for key, run in paths.items():
            times[key].append(seconds(run))
    full, early = (batch / statistics.median(times[key]) for key in ("full", "early"))
    gflops = {key: flops(run) / batch / 1e9 for key, run in paths.items()}
    row = {"teacher": name, "parameters_m": round(sum(p.numel() for p in teacher.unet.parameters()) / 1e6, 2),
           "batch": batch, "repeats": repeats,
           "full_pass_images_per_s": round(full, 1), "early_exit_images_per_s": round(early, 1),
           "ratio": round(early / full, 2),
           "full_pass_gflops_per_image": round(gflops["full"], 3),
           "early_exit_gflops_per_image": round(gflops["early"], 3),
           "flop_ratio": round(gflops["full"] / gflops["early"], 2)}
    print(f"{name:<28} {row['parameters_m']:>6.1f}M  full pass + hooks {full:7.1f} img/s   "
          f"early exit {early:7.1f} img/s   ratio {row['ratio']:.2f}x   (FLOP ratio {row['flop_ratio']:.2f}x)",
          flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each path (median reported)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    config = json.loads((HERE / "fixtures" / "ddpm-cifar10-32.json").read_text())
    torch.manual_seed(0)
    cifar = Teacher(UNet2DModel.from_config(config), ddpm_scheduler(), "google/ddpm-cifar10-32 (random weights)")
    rows = [measure("shipped fashion-mnist", load_teacher(), args.batch, args.repeats),
            measure("ddpm-cifar10-32 architecture", cifar, args.batch, args.repeats)]
    result = {"benchmark": "teacher_features", "tap": "mid_block", **machine(), "results": rows}
    save_result(result, args.out, "teacher_features")


if __name__ == "__main__":
    main()
