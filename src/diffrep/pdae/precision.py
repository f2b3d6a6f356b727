"""The schedule PDAE computes with: float64 from the betas, as the official code does.

The official code builds beta_t with np.linspace in float64, then alpha_t, abar_t, abar_{t-1}, the SNR, lambda_t
and the shift coefficient in float64, casting only at use. diffusers' scheduler keeps a float32 abar_t, and
rebuilding alpha_t = abar_t / abar_{t-1} from it is off by up to 2.4e-4 (relative) at t <= 3. `precision: float64`
(the default) gives the teacher the float64 abar_t from its betas; `float32` keeps the scheduler's (the behaviour
before, an option).
"""
from __future__ import annotations

import math

import torch

from diffrep.errors import UserError

PRECISIONS = ("float64", "float32")


def betas_float64(config) -> torch.Tensor:
    """beta_t, t = 0..T-1, in float64 from a diffusers scheduler config (linear, scaled_linear, squaredcos_cap_v2)."""
    steps, kind = int(config["num_train_timesteps"]), config["beta_schedule"]
    if config.get("trained_betas") is not None:
        return torch.tensor(config["trained_betas"], dtype=torch.float64)
    if kind == "linear":
        return torch.linspace(config["beta_start"], config["beta_end"], steps, dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, steps, dtype=torch.float64) ** 2
    if kind == "squaredcos_cap_v2":
        def abar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return torch.tensor([min(1 - abar((i + 1) / steps) / abar(i / steps), 0.999) for i in range(steps)],
                            dtype=torch.float64)
    raise UserError(f"the teacher's beta_schedule '{kind}' has no float64 form here; use precision float32")


def use_precision(teacher, precision: str = "float64"):
    """Set the teacher's alphas_cumprod to the float64 product of its betas (or leave the scheduler's float32)."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown schedule precision '{precision}' (valid: {', '.join(PRECISIONS)})")
    if precision == "float64":
        teacher.alphas_cumprod = torch.cumprod(1 - betas_float64(teacher.scheduler.config), 0).to(teacher.device)
    return teacher
