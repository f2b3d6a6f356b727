"""How G shifts the frozen DPM (reference sections 1.1 and 1.3), in the official code's sign convention.

    shift_coef_t = -sqrt(alpha_t) (1 - abar_{t-1}) / sqrt(1 - abar_t)        (0 at t = 0, about -0.99 at t = 999)
    eps_hat      = eps_theta(x_t, t) + shift_coef_t * G(x_t, z, t)
which is the classifier-guidance view: the posterior mean moves by Sigma_t G with Sigma_t = beta~_t,
    mu(x_t, eps_hat) = mu(x_t, eps_theta) + beta~_t G,   beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t).
DDIM sampling and encoding use the score form instead: eps_hat = eps_theta - sqrt(1 - abar_t) G (`coefficient="ddim"`).
All functions take the teacher's alphas_cumprod (abar_t, t = 0..T-1) and integer timesteps t of shape (B,).
"""
from __future__ import annotations

import torch

from diffrep.pdae import backbone

COEFFICIENTS = ("ddpm", "ddim")


def _schedule(alphas_cumprod: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(abar_t, abar_{t-1} with abar_{-1} = 1, alpha_t) in float64."""
    abar = alphas_cumprod.double()
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    return abar, abar_prev, abar / abar_prev


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped (B, 1, 1, 1) to broadcast over images `like`."""
    return values.to(like.device)[t.to(like.device)].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def shift_coefficient(alphas_cumprod: torch.Tensor, coefficient: str = "ddpm") -> torch.Tensor:
    """Per-timestep coefficient of G in eps_hat (float32, length T): the DDPM one (training, ancestral sampling,
    the gap) or the DDIM one."""
    abar, abar_prev, alpha = _schedule(alphas_cumprod)
    if coefficient == "ddpm":
        return (-alpha.sqrt() * (1 - abar_prev) / (1 - abar).sqrt()).float()
    if coefficient == "ddim":
        return (-(1 - abar).sqrt()).float()
    raise ValueError(f"unknown coefficient '{coefficient}' (valid: {', '.join(COEFFICIENTS)})")


def posterior_variance(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t), float32 of length T (0 at t = 0, unclipped)."""
    abar, abar_prev, alpha = _schedule(alphas_cumprod)
    return ((1 - alpha) * (1 - abar_prev) / (1 - abar)).float()


def predicted_x0(alphas_cumprod: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    abar = _at(alphas_cumprod.double(), t, x_t)
    return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()


def posterior_mean(alphas_cumprod: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor
                   ) -> torch.Tensor:
    """mu~(x0, x_t) = beta_t sqrt(abar_{t-1}) / (1 - abar_t) x0 + (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t) x_t.
    With x0 = predicted_x0(eps) it is the DPM's reverse mean; the PDAE gap compares it with the true x0's."""
    abar, abar_prev, alpha = _schedule(alphas_cumprod)
    coef_x0 = (1 - alpha) * abar_prev.sqrt() / (1 - abar)
    coef_xt = (1 - abar_prev) * alpha.sqrt() / (1 - abar)
    return _at(coef_x0, t, x_t) * x0 + _at(coef_xt, t, x_t) * x_t


def eps_and_gradient(teacher, estimator, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps_theta, G): one frozen pass of the teacher's encoder half feeds its own decoder and the estimator."""
    with torch.no_grad():
        encoding = backbone.encode(teacher, x_t, t)
        eps = backbone.decode(teacher, encoding)
    return eps, estimator(encoding, z)


def shifted_eps(teacher, estimator, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor,
                coefficient: str = "ddpm") -> torch.Tensor:
    """eps_theta + shift_coef_t * G: the eps the frozen DPM uses when conditioned on z."""
    eps, gradient = eps_and_gradient(teacher, estimator, x_t, t, z)
    return eps + _at(shift_coefficient(teacher.alphas_cumprod, coefficient), t, gradient) * gradient
