"""Deterministic DDIM decoding (x_T -> x_0) and encoding (x_0 -> x_T), as the official code's HEAD (reference 4.1).

One sampler drives every model through an eps function eps_fn(x_t, t) -> eps (`eps_function`):
    the frozen teacher alone          eps_theta(x_t, t)                        (unconditional)
    a PDAE                            eps_theta(x_t, t) - sqrt(1 - abar_t) G(x_t, z, t)    (the "ddim" shift)
    a Diff-AE                         eps(x_t, t, z) of its z-conditioned UNet
Respacing: the N + 1 timesteps sorted(set(int(linspace(0, T - 1, N + 1)))), so N model calls per pass (fewer
when N + 1 > T repeats some). Each step predicts x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar), clamps it to
[-1, 1], recomputes eps = (x_t / sqrt(abar) - x0_hat) / sqrt(1 / abar - 1) and moves to the next timestep:
x <- sqrt(abar') x0_hat + sqrt(1 - abar') eps. Decoding ends at the state of t = 0 (abar_0 = 0.9999, no separate
clean step), encoding starts from x_0 taken as that state, as the reference does.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from diffrep import console
from diffrep.errors import UserError
from diffrep.pdae.shift import shifted_eps

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def respaced(num_timesteps: int, steps: int) -> list[int]:
    """The reference's "ddimN" timesteps: N + 1 points from 0 to T - 1, truncated to integers, unique."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UserError(f"DDIM steps must be a positive integer, got {steps!r}")
    return sorted({int(v) for v in np.linspace(0, num_timesteps - 1, steps + 1)})


def eps_function(model, teacher, z: torch.Tensor | None = None) -> EpsFn:
    """eps_fn(x_t, t) for a loaded PDAE or DiffAE conditioned on z, or for the teacher alone (model None)."""
    if model is None:
        return teacher.eps
    if model.kind == "pdae":
        return lambda x, t: shifted_eps(teacher, model.estimator, x, t, z, coefficient="ddim")
    if model.kind == "diffae":
        return lambda x, t: model.unet(x, t, z)
    raise ValueError(f"unknown autoencoder kind {model.kind!r}")


def _step(eps_fn: EpsFn, x: torch.Tensor, t: int, abar: float, abar_next: float) -> torch.Tensor:
    """One deterministic DDIM move from timestep t (abar) to the state with abar_next, either direction."""
    eps = eps_fn(x, torch.full((len(x),), t, dtype=torch.long, device=x.device))
    x0 = ((x - (1 - abar) ** 0.5 * eps) / abar ** 0.5).clamp(-1, 1)
    eps = (x / abar ** 0.5 - x0) / (1 / abar - 1) ** 0.5
    return abar_next ** 0.5 * x0 + (1 - abar_next) ** 0.5 * eps


def _run(eps_fn: EpsFn, alphas_cumprod: torch.Tensor, x: torch.Tensor, steps: int, reverse: bool, progress: bool,
         desc: str) -> torch.Tensor:
    ts = respaced(len(alphas_cumprod), steps)
    abar = [float(a) for a in alphas_cumprod.double()[ts]]
    pairs = [(i, i - 1) for i in range(len(ts) - 1, 0, -1)] if reverse else [(i, i + 1) for i in range(len(ts) - 1)]
    with torch.no_grad():
        for i, j in console.bar(pairs, progress, desc=desc, leave=False, unit="step"):
            x = _step(eps_fn, x, ts[i], abar[i], abar[j])
    return x


def decode(eps_fn: EpsFn, alphas_cumprod: torch.Tensor, x_T: torch.Tensor, steps: int, progress: bool = False
           ) -> torch.Tensor:
    """x_T (the state at t = T - 1) -> images at t = 0, in N = steps DDIM steps."""
    return _run(eps_fn, alphas_cumprod, x_T, steps, True, progress, f"DDIM decode ({steps})")


def encode(eps_fn: EpsFn, alphas_cumprod: torch.Tensor, x0: torch.Tensor, steps: int, progress: bool = False
           ) -> torch.Tensor:
    """Images x0 in [-1, 1] -> their x_T by running the same deterministic steps forward (DDIM inversion)."""
    return _run(eps_fn, alphas_cumprod, x0, steps, False, progress, f"DDIM encode ({steps})")
