"""How the teacher's timestep is chosen for each sample: a learned policy, one fixed t, or uniform in a range.

Specs (strings, as written in a config or on the command line):

- "policy"        the REINFORCE policy of policy.py picks t per image (the reference's RL classes);
- "fixed:T"       t = T for every sample ("fixed:0" is the CelebA configs' max_time_step=1, the reference's
                  `SingleT` with max_time_step=T is fixed:T);
- "uniform:LO-HI" t ~ U{LO, ..., HI}, both ends included. The reference's `max_time_step=M`
                  (torch.randint(0, M), exclusive) is uniform:0-(M-1), e.g. max_time_step=50 is uniform:0-49.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from diffrep.errors import UserError

KINDS = ("policy", "fixed", "uniform")
EXAMPLES = "policy, fixed:0, uniform:0-49"


@dataclass(frozen=True)
class TimestepSelection:
    """A parsed timestep spec. kind is "policy", "fixed" or "uniform"; low..high (inclusive) the range of t
    (for a policy: the whole schedule 0..T-1, all of which the policy may pick)."""

    kind: str
    low: int
    high: int

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        """(batch_size,) LongTensor of timesteps for "fixed" and "uniform" (drawn on the CPU with generator,
        then moved to device, so a seeded run does not depend on the device)."""
        if self.kind == "policy":
            raise UserError("timesteps chosen by the policy come from the policy network, not from sample()")
        if self.kind == "fixed":
            t = torch.full((batch_size,), self.low, dtype=torch.long)
        else:
            t = torch.randint(self.low, self.high + 1, (batch_size,), generator=generator)
        return t.to(device) if device is not None else t

    def __str__(self) -> str:
        return {"policy": "policy", "fixed": f"fixed:{self.low}", "uniform": f"uniform:{self.low}-{self.high}"}[
            self.kind]


def parse_selection(spec: str, num_timesteps: int) -> TimestepSelection:
    """Parse "policy", "fixed:T" or "uniform:LO-HI" against a teacher with num_timesteps timesteps."""
    last = num_timesteps - 1
    text = str(spec).strip().lower().replace(" ", "")
    if text == "policy":
        return TimestepSelection("policy", 0, last)
    fixed = re.fullmatch(r"fixed:(\d+)", text)
    uniform = re.fullmatch(r"uniform:(\d+)-(\d+)", text)
    if fixed:
        low = high = int(fixed.group(1))
    elif uniform:
        low, high = int(uniform.group(1)), int(uniform.group(2))
    else:
        raise UserError(f"bad timestep selection '{spec}': use policy, fixed:T or uniform:LO-HI (e.g. {EXAMPLES})")
    if high > last:
        raise UserError(f"timestep selection '{spec}': timesteps must lie in 0..{last} for this teacher "
                        f"(e.g. fixed:0, uniform:0-{min(49, last)})")
    if low > high:
        raise UserError(f"timestep selection '{spec}': LO must not exceed HI (e.g. uniform:{high}-{low})")
    return TimestepSelection("fixed" if fixed else "uniform", low, high)
