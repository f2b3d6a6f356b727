"""Images per second of teacher.features(..., taps=[default tap]): early exit versus a full pass with hooks.

Four teachers, random weights unless shipped: (a) the shipped Fashion-MNIST teacher, (b) the architecture of
google/ddpm-cifar10-32 (35.7M parameters), (c) ADM's ImageNet 64 px UNet (preset adm-imagenet-64, 296M), and
(d) a Stable Diffusion v1.5-shaped UNet2DConditionModel (860M, 4 x 64 x 64 latents of 512 px images, zero text
context) with the v1.5 VAE; configs in fixtures/. The tap is each teacher's default (mid_block, middle_block).
The two paths are timed in alternation and the medians compared; FLOPs per image of both paths (torch's
FlopCounterMode, counted on shapes only) give the machine-independent ceiling of the speed-up.

For (d) the images per second are the denoiser's: the VAE encodes each batch once and features() reuses that latent
across calls with the same tensor, so the timed calls exclude it; one encode of the batch is timed on its own.
The big teachers (c, d) run small batches, few repeats and no warm-up call (a call takes many seconds).

    python benchmarks/teacher_features.py [--batch 64] [--repeats 5] [--adm_batch 4] [--sd_batch 2]
                                          [--big_repeats 1] [--only NAME ...] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel, UNet2DModel
from timing import machine, save_result  # benchmarks/timing.py
from torch.utils.flop_counter import FlopCounterMode

from diffrep.teacher import Teacher, load_teacher
from diffrep.teacher.adm_teacher import adm_architecture
from diffrep.teacher.latent_unet import LatentUNetTeacher
from diffrep.teacher.schedule import ddpm_scheduler
from diffrep.teacher.taps import run_with_taps_on_meta

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def gflops_per_image(teacher: Teacher, tap: str, early_exit: bool) -> float:
    """The denoiser's FLOPs for one image up to the tap (or to the end), counted on shapes only."""
    x = torch.zeros(1, *teacher.model_shape, device="meta")
    args, kwargs = teacher.denoiser_inputs(x, torch.zeros(1, dtype=torch.long, device="meta"))
    with FlopCounterMode(display=False) as counter:
        run_with_taps_on_meta(teacher.unet, [tap], early_exit, *args, **kwargs)
    return counter.get_total_flops() / 1e9


def measure(name: str, teacher: Teacher, batch: int, repeats: int, warmup: bool = True) -> dict:
    """Median images/s of both paths, timed in alternation so that machine noise hits both alike."""
    tap = teacher.default_tap
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, teacher.channels, teacher.resolution, teacher.resolution, generator=gen) * 2 - 1
    t = torch.randint(0, teacher.num_timesteps, (batch,), generator=gen)
    extra = {}
    if hasattr(teacher, "vae"):  # the latent is made once here and reused by every timed call
        extra = {"vae_encode_seconds_per_batch": round(seconds(lambda: teacher.encode(x)), 2),
                 "vae": "excluded from images/s (one encode per batch, cached across calls)"}
    paths = {"full": lambda: teacher.features(x, t, [tap], early_exit=False),
             "early": lambda: teacher.features(x, t, [tap], early_exit=True)}
    if warmup:
        for run in paths.values():
            run()
    times = {key: [] for key in paths}
    for _ in range(repeats):
        for key, run in paths.items():
            times[key].append(seconds(run))
    full, early = (batch / statistics.median(times[key]) for key in ("full", "early"))
    gflops = {key: gflops_per_image(teacher, tap, key == "early") for key in paths}
    row = {"teacher": name, "family": teacher.family, "tap": tap,
           "parameters_m": round(sum(p.numel() for p in teacher.unet.parameters()) / 1e6, 2),
           "batch": batch, "repeats": repeats, "warmup": warmup,
           "full_pass_images_per_s": round(full, 3 if full < 10 else 1),
           "early_exit_images_per_s": round(early, 3 if early < 10 else 1),
           "ratio": round(early / full, 2),
           "full_pass_gflops_per_image": round(gflops["full"], 3),
           "early_exit_gflops_per_image": round(gflops["early"], 3),
           "flop_ratio": round(gflops["full"] / gflops["early"], 2), **extra}
    print(f"{name:<34} {row['parameters_m']:>6.1f}M  full pass + hooks {full:8.3f} img/s   "
          f"early exit {early:8.3f} img/s   ratio {row['ratio']:.2f}x   (FLOP ratio {row['flop_ratio']:.2f}x)",
          flush=True)
    return row


def cifar_teacher() -> Teacher:
    config = json.loads((FIXTURES / "ddpm-cifar10-32.json").read_text())
    return Teacher(UNet2DModel.from_config(config), ddpm_scheduler(), "google/ddpm-cifar10-32 (random weights)")


def sd_teacher() -> LatentUNetTeacher:
    """SD v1.5's UNet and VAE shapes with random weights, run with a zero text context (1 x 77 x 768)."""
    unet = UNet2DConditionModel.from_config(json.loads((FIXTURES / "sd-v1-5-unet.json").read_text()))
    vae = AutoencoderKL.from_config(json.loads((FIXTURES / "sd-v1-5-vae.json").read_text()))
    scheduler = DDPMScheduler.from_config(json.loads((FIXTURES / "sd-v1-5-scheduler.json").read_text()))
    context = torch.zeros(1, 77, unet.config.cross_attention_dim)
    return LatentUNetTeacher(unet, vae, scheduler, context, "zeros", "stable-diffusion-v1-5 shape (random weights)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="batch of the small teachers (a, b)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each path (median reported)")
    parser.add_argument("--adm_batch", type=int, default=4)
    parser.add_argument("--sd_batch", type=int, default=2)
    parser.add_argument("--big_repeats", type=int, default=1, help="timed runs for the big teachers (c, d)")
    parser.add_argument("--only", nargs="+", choices=("shipped", "cifar", "adm", "sd"), help="run these rows only")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    rows = {  # name -> (build, batch, repeats, warm-up)
        "shipped fashion-mnist": ("shipped", load_teacher, args.batch, args.repeats, True),
        "ddpm-cifar10-32 architecture": ("cifar", cifar_teacher, args.batch, args.repeats, True),
        "adm-imagenet-64 architecture": ("adm", lambda: adm_architecture(preset="adm-imagenet-64"),
                                         args.adm_batch, args.big_repeats, False),
        "stable-diffusion-v1-5 architecture": ("sd", sd_teacher, args.sd_batch, args.big_repeats, False),
    }
    results = []
    for name, (key, build, batch, repeats, warmup) in rows.items():
        if args.only and key not in args.only:
            continue
        torch.manual_seed(0)
        results.append(measure(name, build(), batch, repeats, warmup))
    result = {"benchmark": "teacher_features", "tap": "each teacher's default tap", **machine(),
              "load": "2 CPU cores shared with a long training job: absolute img/s are low and noisy; the ratios "
                      "and FLOP ratios are what carries over", "results": results}
    save_result(result, args.out, "teacher_features")


if __name__ == "__main__":
    main()
