"""The noise schedule a teacher was trained with: a diffusers DDPMScheduler config."""
from __future__ import annotations

import json
from pathlib import Path

from diffusers import DDIMScheduler, DDPMScheduler

from diffrep.errors import UserError
from diffrep.options import blocks

SCHEDULE_DEFAULTS = blocks.SCHEDULE


def ddpm_scheduler(schedule: dict | None = None) -> DDPMScheduler:
    return DDPMScheduler(**{**SCHEDULE_DEFAULTS, **(schedule or {})})


def load_scheduler(directory: Path) -> DDPMScheduler:
    """scheduler_config.json in the directory (or its scheduler/ sub-folder), else the DDPM default."""
    for candidate in (Path(directory) / "scheduler_config.json",
                      Path(directory) / "scheduler" / "scheduler_config.json",
                      Path(directory).parent / "scheduler" / "scheduler_config.json"):
        if candidate.is_file():
            return DDPMScheduler.from_config(json.loads(candidate.read_text()))
    return ddpm_scheduler()


SAMPLERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}


def check_sampler(kind: str) -> str:
    if kind not in SAMPLERS:
        raise UserError(f"unknown sampler '{kind}' (valid: {', '.join(SAMPLERS)})")
    return kind


def sampler_scheduler(scheduler: DDPMScheduler, kind: str):
    """The scheduler a sampler needs, sharing the teacher's betas: 'ddpm' or 'ddim'."""
    return SAMPLERS[check_sampler(kind)].from_config(scheduler.config)
