"""Exponential moving average of a model's weights, with the usual warm-up (1 + n) / (10 + n).

The EMA copy is a submodule of the LightningModule, so it is checkpointed and resumed with it.
"""
from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel


def ema_model(model: torch.nn.Module, decay: float) -> AveragedModel:
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor):
        if not averaged[0].is_floating_point():  # AveragedModel groups by dtype; BatchNorm's step counters
            torch._foreach_copy_(averaged, current)  # are integers, and an average of counters means nothing
            return
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(averaged, current, 1.0 - d)

    ema = AveragedModel(model, multi_avg_fn=update, use_buffers=True)
    return ema.requires_grad_(False)  # never trained by the optimizer; DDP must not expect gradients
