"""Seconds per training step of `diffrep dpm fit`: float32 against bf16 autocast (`--trainer.precision bf16-mixed`).

Both are the real step of the shipped teacher's architecture (DDPMModule.training_step, then backward, the Adam
step and the EMA update) on the same batch of random images, timed in alternation; the medians are compared.
Lightning's bf16-mixed on a CPU is torch.autocast("cpu", torch.bfloat16) around the step, as here. The gain needs
a CPU with bf16 instructions (AVX512-BF16 or AMX); elsewhere bf16 can be slower than float32.
fp32_over_bf16 > 1 means bf16 is faster.

    python benchmarks/dpm_step.py [--batch 32] [--repeats 7]
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from diffrep import config as config_lib
from diffrep.data import ImageSet
from diffrep.dpm import fit
from diffrep.dpm.module import DDPMModule
from timing import alternating_medians, machine, save_result, step_parser  # benchmarks/timing.py


def make_step(batch: int, precision: str):
    cfg = config_lib.resolve(fit.DEFAULTS, None, {})
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(batch, 1, 32, 32, generator=gen) * 2 - 1
    data = ImageSet(((x0 + 1) * 127.5).round().to(torch.uint8), torch.zeros(batch, dtype=torch.long), ["x"])
    torch.manual_seed(0)
    module = DDPMModule(fit.unet_config(cfg), cfg["schedule"], {**cfg["optim"], "batch_size": batch}, cfg["loss"],
                        data, 0, False)
    optimizer = torch.optim.Adam(module.unet.parameters(), lr=cfg["optim"]["lr"])
    module.optimizers = lambda: optimizer  # training_step logs the rate; there is no Trainer here

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = module.training_step((x0, None), 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        module.ema.update_parameters(module.unet)
    return step


def bf16_cpu() -> bool | None:
    """Whether the CPU advertises bf16 instructions (None where /proc/cpuinfo does not exist)."""
    info = Path("/proc/cpuinfo")
    return any(flag in info.read_text() for flag in ("avx512_bf16", "amx_bf16")) if info.is_file() else None


def main() -> None:
    args = step_parser(__doc__, batch=32, repeats=7).parse_args()
    warnings.filterwarnings("ignore", message=".*self.log.*")
    med = alternating_medians({p: make_step(args.batch, p) for p in ("fp32", "bf16")}, args.repeats)
    result = {
        "model": "the shipped teacher's UNet2DModel (4.33M parameters, 32 x 32 x 1)", "batch": args.batch,
        "repeats": args.repeats, **machine(), "bf16_cpu": bf16_cpu(),
        **{f"{key}_seconds_per_step": round(value, 4) for key, value in med.items()},
        "fp32_over_bf16": round(med["fp32"] / med["bf16"], 2),
    }
    save_result(result, args.out, "dpm_step")


if __name__ == "__main__":
    main()
