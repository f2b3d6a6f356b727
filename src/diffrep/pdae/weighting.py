"""lambda_t, the per-timestep weight of the PDAE loss, with SNR_t = abar_t / (1 - abar_t).

    pdae  SNR^gamma / (1 + SNR)           the reference's redesigned weighting, gamma = 0.1 (section 1.5)
    none  1                               the simple eps loss (the reference's commented-out `weight = None`)
    p2    1 / (k + SNR)^gamma_p2          P2 weighting (Choi et al. 2022), k = 1, gamma_p2 = 1 as in section 1.5
"""
from __future__ import annotations

import torch

from diffrep.errors import UserError

WEIGHTINGS = ("pdae", "none", "p2")


def snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    abar = alphas_cumprod.double()
    return abar / (1 - abar)


def loss_weights(alphas_cumprod: torch.Tensor, name: str = "pdae", gamma: float = 0.1, p2_k: float = 1.0,
                 p2_gamma: float = 1.0) -> torch.Tensor:
    """lambda_t for t = 0..T-1, float32."""
    for key, value in (("gamma", gamma), ("p2.k", p2_k), ("p2.gamma", p2_gamma)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{key} must be a number, got {value!r}")
    s = snr(alphas_cumprod)
    if name == "pdae":
        weights = s ** gamma / (1 + s)
    elif name == "none":
        weights = torch.ones_like(s)
    elif name == "p2":
        weights = 1 / (p2_k + s) ** p2_gamma
    else:
        raise UserError(f"unknown weighting '{name}' (valid: {', '.join(WEIGHTINGS)})")
    return weights.float()
