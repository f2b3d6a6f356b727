"""The probe sweep: every (teacher, input, t, tap) probed, plus the raw-pixel and random-teacher baselines."""
from __future__ import annotations

import re

import numpy as np
import torch
from diffusers import UNet2DModel
from tqdm.auto import tqdm

from diffrep.data import ImageSet
from diffrep.errors import UserError
from diffrep.probe.features import extract_pools, parse_pools, pixels
from diffrep.probe.linear import PROBE_DEFAULTS, probe
from diffrep.probe.rank import feature_rank
from diffrep.teacher import INPUT_MODES, Teacher

DEFAULT_TIMESTEPS = (0, 10, 50, 100, 250, 500, 750, 999)  # for T = 1000; scaled to other T
COLUMNS = ("teacher", "input", "t", "tap", "pool", "accuracy", "erank_entropy", "erank_count", "mean_norm", "dim")


def as_list(value, what: str) -> list:
    """A YAML list, a comma-separated string ('0,10,50') or a single value, as a list."""
    if value is None:
        return []
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
        if not all(items):
            raise UserError(f"bad {what} '{value}' (a comma-separated list such as 0,10,50)")
        return items
    return list(value) if isinstance(value, (list, tuple)) else [value]


def default_timesteps(num_timesteps: int) -> list[int]:
    return sorted({round(t * (num_timesteps - 1) / 999) for t in DEFAULT_TIMESTEPS})


def parse_timesteps(value, num_timesteps: int) -> list[int]:
    """Distinct integer timesteps in 0..T-1, ascending; None gives the default grid."""
    if value is None:
        return default_timesteps(num_timesteps)
    steps = []
    for item in as_list(value, "timesteps"):
        if isinstance(item, bool) or not re.fullmatch(r"\d+", str(item).strip()):
            raise UserError(f"bad timestep '{item}' in timesteps (integers in 0..{num_timesteps - 1}, "
                            f"e.g. 0,10,50)")
        steps.append(int(str(item).strip()))
    if not steps:
        raise UserError("no timesteps given")
    if max(steps) >= num_timesteps:
        raise UserError(f"timesteps must lie in 0..{num_timesteps - 1}, got {max(steps)}")
    return sorted(set(steps))


def default_taps(teacher: Teacher) -> list[str]:
    """One tap per UNet stage: each down block that changes the resolution, mid_block, up_blocks.0."""
    taps, size = [], teacher.resolution
    for name, (shape, _) in teacher.taps.items():
        if re.fullmatch(r"down_blocks\.\d+", name) and shape[1] != size:
            taps.append(name)
            size = shape[1]
    taps += [name for name in ("mid_block", "up_blocks.0") if name in teacher.taps]
    if not taps:
        raise UserError("cannot choose default taps for this model (no down_blocks.N, mid_block or up_blocks.0); "
                        "pass --taps")
    return taps


def parse_taps(teacher: Teacher, value) -> list[str]:
    """Valid tap names in the teacher's execution order; None gives default_taps."""
    if value is None:
        return default_taps(teacher)
    taps = teacher.check_taps(list(dict.fromkeys(as_list(value, "taps"))))
    order = list(teacher.taps)
    return sorted(taps, key=order.index)


def parse_inputs(value) -> list[str]:
    inputs = list(dict.fromkeys(as_list(value, "inputs")))
    if not inputs:
        raise UserError("no inputs given (clean, noised or both)")
    for mode in inputs:
        if mode not in INPUT_MODES:
            raise UserError(f"unknown input '{mode}' (valid: {', '.join(INPUT_MODES)})")
    return inputs


def random_like(teacher: Teacher, seed: int = 0) -> Teacher:
    """A randomly initialised teacher of the same architecture and schedule, seeded from `seed` through
    a hash (a plain manual_seed(seed) would reproduce any model that was itself initialised that way)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(np.random.SeedSequence([int(seed), 0x52414E44]).generate_state(1)[0]))
        unet = UNet2DModel.from_config(teacher.unet.config)
    return Teacher(unet, teacher.scheduler).to(teacher.device)


def best(rows: list[dict], teacher: str = "trained", pool: str | None = None) -> dict | None:
    """The row with the highest accuracy for one teacher kind, optionally one pooling (ties: the earliest
    row, i.e. smallest t). The raw-pixel row is not pooled and is returned whatever `pool` says."""
    candidates = [row for row in rows if row["teacher"] == teacher and (pool is None or row["pool"] in ("", pool))]
    return max(candidates, key=lambda row: row["accuracy"]) if candidates else None


def run(teacher: Teacher, train_data: ImageSet, test_data: ImageSet, timesteps=None, taps=None,
        inputs=("clean", "noised"), pool="gap", noise_draws: int = 1, batch_size: int = 256,
        random_teacher: bool = True, weight_decay: float = PROBE_DEFAULTS["weight_decay"],
        max_iter: int = PROBE_DEFAULTS["max_iter"], seed: int = 0, progress: bool = True) -> list[dict]:
    """Probe every (input, t, tap, pool) of `teacher` (and of a random teacher), plus raw pixels.

    `pool` is one pooling or several ("gap,grid:4"); all come from the same forward passes.
    Returns one dict per probe with the keys in COLUMNS; teacher is "trained", "random" or "pixels"
    (the pixel row has input "", t None, tap "", pool ""). `best(rows)["t"]` is the best fixed timestep.
    """
    timesteps = parse_timesteps(timesteps, teacher.num_timesteps)
    taps = parse_taps(teacher, taps)
    inputs = parse_inputs(inputs)
    pools = parse_pools(pool)
    teacher.check_images(train_data.floats(slice(0, 1)))
    probe_opts = {"weight_decay": weight_decay, "max_iter": max_iter, "num_classes": len(train_data.classes)}

    def measure(kind: str, mode: str, t: int | None, tap: str, pool: str, train_x: torch.Tensor,
                test_x: torch.Tensor) -> dict:
        erank, count = feature_rank(train_x)
        return {"teacher": kind, "input": mode, "t": t, "tap": tap, "pool": pool,
                "accuracy": probe(train_x, train_data.labels, test_x, test_data.labels, **probe_opts),
                "erank_entropy": erank, "erank_count": count,
                "mean_norm": float(train_x.norm(dim=1).mean()), "dim": int(train_x.shape[1])}

    rows = [measure("pixels", "", None, "", "", pixels(train_data), pixels(test_data))]
    teachers = [("trained", teacher)] + ([("random", random_like(teacher, seed))] if random_teacher else [])
    combos = [(kind, model, mode, t) for kind, model in teachers for mode in inputs for t in timesteps]
    for kind, model, mode, t in tqdm(combos, desc="probe", disable=None if progress else True, unit="pass"):
        feats = {split: extract_pools(model, data, t, taps, mode, pools, batch_size, seed, split, noise_draws,
                                      progress, f"{kind} {mode} t={t} {split}")
                 for split, data in (("train", train_data), ("test", test_data))}
        for pool in pools:
            done = [measure(kind, mode, t, tap, pool, feats["train"][pool].pop(tap), feats["test"][pool].pop(tap))
                    for tap in taps]
            rows += done
            if progress:
                tqdm.write(f"{kind:7s} {mode:6s} t={t:<4d} {pool:7s} "
                           + "  ".join(f"{r['tap']} {r['accuracy']:.3f}" for r in done))
    return rows
