"""Learning-rate factors: a linear warm-up, then constant, cosine or linear decay to a floor at the last step."""
from __future__ import annotations

import math

from diffrep.errors import UserError

LR_SCHEDULES = ("constant", "cosine", "linear")


def check_schedule(kind: str, floor: float) -> None:
    if kind not in LR_SCHEDULES:
        raise UserError(f"unknown learning-rate schedule '{kind}' (valid: {', '.join(LR_SCHEDULES)})")
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 <= floor <= 1:
        raise UserError(f"the final learning-rate ratio must lie in [0, 1], got {floor!r}")


def lr_factor(step: int, warmup: int, total: int, kind: str = "cosine", floor: float = 0.0) -> float:
    """Multiplier of the peak rate at optimizer step `step`: (step + 1) / warmup during the warm-up, then 1
    (constant) or a cosine / linear fall from 1 to `floor` at step `total`."""
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if kind == "cosine" else 1.0 - progress
    return floor + (1.0 - floor) * shape


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine from 1 to 0 at `total`."""
    return lr_factor(step, warmup, total, "cosine", 0.0)
