"""Effective rank of a feature matrix, from the singular values of its centred version.

The singular values come from the eigenvalues of a Gram matrix accumulated chunk by chunk in float64,
so a 60k x 2048 float32 matrix is never copied to float64 whole, and small eigenvalues are not lost
to float32 round-off (the count threshold, 1e-3 of the largest singular value, is 1e-6 in eigenvalues).
"""
from __future__ import annotations

import torch


def centred_gram(x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The float64 Gram matrix of the centred rows of x (N, D): D x D, or N x N when D > N (same spectrum)."""
    x64_mean = sum(x[i:i + chunk].double().sum(0) for i in range(0, len(x), chunk)) / len(x)
    if x.shape[1] > len(x):
        xc = x.double() - x64_mean
        return xc @ xc.T
    gram = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    for i in range(0, len(x), chunk):
        xc = x[i:i + chunk].double() - x64_mean
        gram.addmm_(xc.T, xc)
    return gram


def singular_values(x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Singular values (descending, float64) of the centred x: sqrt of the clamped Gram eigenvalues."""
    return torch.linalg.eigvalsh(centred_gram(x, chunk)).clamp_min(0).sqrt().flip(0)


def effective_rank(s: torch.Tensor, threshold: float = 1e-3) -> tuple[float, int]:
    """(exp of the entropy of s / sum(s) (Roy & Vetterli 2007), count of s above threshold * max(s))."""
    s = s.double()
    if len(s) == 0 or s.max() <= 0:
        return 0.0, 0
    p = s / s.sum()
    p = p[p > 0]
    entropy = float(-(p * p.log()).sum())
    return float(torch.tensor(entropy).exp()), int((s > threshold * s.max()).sum())


def feature_rank(x: torch.Tensor) -> tuple[float, int]:
    """effective_rank(singular_values(x))."""
    return effective_rank(singular_values(x))
