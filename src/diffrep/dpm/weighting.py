"""Per-timestep weights of the DDPM epsilon loss.

    none     1 (Ho et al. 2020's simple loss)
    min_snr  min(SNR_t, gamma) / SNR_t, Min-SNR-gamma (Hang et al. 2023) for epsilon prediction, gamma = 5:
             the low-noise timesteps, whose gradients conflict with the rest, count less
"""
from __future__ import annotations

import torch

from diffrep.errors import UserError

DPM_WEIGHTINGS = ("none", "min_snr")


def eps_loss_weights(alphas_cumprod: torch.Tensor, name: str = "none", gamma: float = 5.0) -> torch.Tensor:
    """The weight of each timestep t = 0..T-1, float32."""
    if name not in DPM_WEIGHTINGS:
        raise UserError(f"unknown loss.weighting '{name}' (valid: {', '.join(DPM_WEIGHTINGS)})")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma <= 0:
        raise UserError(f"loss.snr_gamma must be a number > 0, got {gamma!r}")
    abar = alphas_cumprod.double()
    snr = abar / (1 - abar)
    weights = torch.ones_like(snr) if name == "none" else snr.clamp(max=gamma) / snr
    return weights.float()
