"""Images per second of teacher.features(..., taps=["mid_block"]): early exit versus a full pass with hooks.

Two teachers: (a) the shipped Fashion-MNIST teacher, (b) the architecture of google/ddpm-cifar10-32
(35.7M parameters, random weights from the config in fixtures/). Batch 64, random t per image.

    python benchmarks/teacher_features.py [--batch 64] [--repeats 3] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from diffusers import UNet2DModel

from diffrep.teacher import Teacher, load_teacher
from diffrep.teacher.schedule import ddpm_scheduler

HERE = Path(__file__).resolve().parent


def throughput(teacher: Teacher, x: torch.Tensor, t: torch.Tensor, early_exit: bool, repeats: int) -> float:
    teacher.features(x, t, ["mid_block"], early_exit=early_exit)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        teacher.features(x, t, ["mid_block"], early_exit=early_exit)
    return repeats * len(x) / (time.perf_counter() - start)


def measure(name: str, teacher: Teacher, batch: int, repeats: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, teacher.channels, teacher.resolution, teacher.resolution, generator=gen) * 2 - 1
    t = torch.randint(0, teacher.num_timesteps, (batch,), generator=gen)
    full = throughput(teacher, x, t, early_exit=False, repeats=repeats)
    early = throughput(teacher, x, t, early_exit=True, repeats=repeats)
    row = {"teacher": name, "parameters_m": round(sum(p.numel() for p in teacher.unet.parameters()) / 1e6, 2),
           "batch": batch, "full_pass_images_per_s": round(full, 1), "early_exit_images_per_s": round(early, 1),
           "ratio": round(early / full, 2)}
    print(f"{name:<28} {row['parameters_m']:>6.1f}M  full pass + hooks {full:8.1f} img/s   "
          f"early exit {early:8.1f} img/s   ratio {row['ratio']:.2f}x", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    config = json.loads((HERE / "fixtures" / "ddpm-cifar10-32.json").read_text())
    torch.manual_seed(0)
    cifar = Teacher(UNet2DModel.from_config(config), ddpm_scheduler(), "google/ddpm-cifar10-32 (random weights)")
    rows = [measure("shipped fashion-mnist", load_teacher(), args.batch, args.repeats),
            measure("ddpm-cifar10-32 architecture", cifar, args.batch, args.repeats)]
    result = {"benchmark": "teacher_features", "tap": "mid_block", "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "results": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "teacher_features.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
