"""The linear probe: standardised features, multinomial logistic regression with L2, full-batch L-BFGS.

Full-batch L-BFGS on a convex loss from a zero start is deterministic (no seed, no learning-rate or
epoch schedule to tune) and converges in tens of iterations, so a probe's accuracy measures the
features rather than the optimiser.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PROBE_DEFAULTS = {
    "weight_decay": 1.0e-4,  # loss = mean cross-entropy + weight_decay * ||W||_F^2 (bias not penalised)
    "max_iter": 50,          # L-BFGS iterations (strong-Wolfe line search; at most 1.25x as many evaluations)
}


def standardise(train: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Centre and scale every split with the train split's per-feature mean and std (constant features: std 1)."""
    mean = train.mean(0)
    std = train.std(0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return tuple((x - mean) / std for x in (train, *others))


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float = 1e-4,
                 max_iter: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """(W (K, D), b (K,)) minimising mean CE(x W^T + b, y) + weight_decay * ||W||^2, from zeros.

    W is stored (K, D) so that both the forward (F.linear) and the gradient (G^T x) are row-major
    friendly matrix products: three times faster on CPU than x @ W with W (D, K).
    """
    x = x.float()
    weight = torch.zeros(num_classes, x.shape[1], requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(F.linear(x, weight, bias), y) + weight_decay * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def accuracy(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> float:
    return float((F.linear(x.float(), weight, bias).argmax(1) == y).float().mean()) if len(y) else float("nan")


def probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
          weight_decay: float = 1e-4, max_iter: int = 50, num_classes: int | None = None) -> float:
    """Top-1 test accuracy of a logistic-regression probe trained on the (standardised) train features."""
    num_classes = num_classes or int(max(train_y.max(), test_y.max())) + 1
    train_s, test_s = standardise(train_x.float(), test_x.float())
    weight, bias = fit_logistic(train_s, train_y, num_classes, weight_decay, max_iter)
    return accuracy(test_s, test_y, weight, bias)
