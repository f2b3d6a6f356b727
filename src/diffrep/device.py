"""A device name as the options give it (auto, cpu, cuda, cuda:N) -> torch.device; auto: cuda when available."""
from __future__ import annotations

import torch

from diffrep.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N)") from None
