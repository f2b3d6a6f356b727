"""Streaming pooled features: one early-exit teacher pass per batch for all taps, pooled at once.

Full feature maps of a whole split would not fit in memory (60k x 128 x 16 x 16 floats is 7.9 GB),
so each batch's maps are average-pooled right away and only the pooled float32 vectors are kept.
"""
from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffrep.data import ImageSet
from diffrep.errors import UserError
from diffrep.teacher import Teacher

SPLIT_STREAMS = {"train": 0, "test": 1}  # noise streams differ between splits, so no noise is shared


def parse_pool(pool) -> int:
    """'gap' -> 1, 'grid:K' -> K (a K x K adaptive-average-pooled grid, flattened)."""
    if pool == "gap":
        return 1
    match = re.fullmatch(r"grid:(\d+)", str(pool).strip())
    if not match or int(match.group(1)) < 1:
        raise UserError(f"bad pool '{pool}' (gap, or grid:K with K >= 1, e.g. grid:2)")
    return int(match.group(1))


def pooled_shape(shape: tuple[int, ...], grid: int) -> tuple[int, int, int]:
    """(C, h, w) after pooling a (C, H, W) map: a grid never finer than the map itself."""
    c, h, w = shape
    return c, min(grid, h), min(grid, w)


def pool_map(feature: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C * h * w) float32, h = min(grid, H), w = min(grid, W)."""
    _, h, w = pooled_shape(tuple(feature.shape[1:]), grid)
    return F.adaptive_avg_pool2d(feature.float(), (h, w)).flatten(1)


def noise_generator(seed: int, split: str, batch: int, draw: int) -> torch.Generator:
    """A generator seeded by (seed, split, batch index, draw): image i gets the same noise at every t and
    tap, and for the trained and the random teacher, so comparisons across t are paired."""
    state = np.random.SeedSequence([int(seed), SPLIT_STREAMS.get(split, 2), batch, draw]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def parse_pools(value) -> list[str]:
    """Distinct pool names from a list or a comma-separated string ('gap,grid:4'), each checked."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    pools = list(dict.fromkeys(str(item).strip() for item in items))
    if not pools:
        raise UserError("no pool given (gap, grid:K, or a list such as gap,grid:4)")
    for pool in pools:
        parse_pool(pool)
    return pools


@torch.no_grad()
def extract_pools(teacher: Teacher, data: ImageSet, t: int, taps: list[str], input: str = "clean",
                  pools=("gap",), batch_size: int = 256, seed: int = 0, split: str = "train",
                  noise_draws: int = 1, progress: bool = False, desc: str | None = None
                  ) -> dict[str, dict[str, torch.Tensor]]:
    """{pool: {tap: (N, D) float32 pooled features}} of every image in `data` at timestep t.

    Every pooling of every tap comes from the same forward passes, so extra poolings cost almost nothing.
    input="noised" averages the pooled features of `noise_draws` noisy copies x_t of each image
    (noise from `noise_generator`, so it depends on batch_size too); "clean" ignores noise_draws.
    progress=True shows a bar when stderr is a terminal.
    """
    taps = teacher.check_taps(taps)
    grids = {pool: parse_pool(pool) for pool in parse_pools(pools)}
    if batch_size < 1 or noise_draws < 1:
        raise UserError(f"batch_size and noise_draws must be >= 1, got {batch_size} and {noise_draws}")
    n = len(data)
    out = {pool: {tap: torch.empty(n, int(np.prod(pooled_shape(teacher.taps[tap][0], grid)))) for tap in taps}
           for pool, grid in grids.items()}
    draws = noise_draws if input == "noised" else 1
    starts = range(0, n, batch_size)
    for b, start in enumerate(tqdm(starts, desc=desc, disable=None if progress else True, leave=False, unit="batch")):
        x = data.floats(slice(start, start + batch_size))
        rows = slice(start, start + len(x))
        for d in range(draws):
            noise = torch.randn(x.shape, generator=noise_generator(seed, split, b, d)) if input == "noised" else None
            feats = teacher.features(x, t, taps, input=input, noise=noise)
            for pool, grid in grids.items():
                for tap in taps:
                    pooled = pool_map(feats[tap], grid).cpu()
                    if d == 0:
                        out[pool][tap][rows] = pooled
                    else:
                        out[pool][tap][rows] += pooled
        if draws > 1:
            for by_tap in out.values():
                for tap in taps:
                    by_tap[tap][rows] /= draws
    return out


def extract(teacher: Teacher, data: ImageSet, t: int, taps: list[str], input: str = "clean",
            pool: str = "gap", batch_size: int = 256, seed: int = 0, split: str = "train",
            noise_draws: int = 1, progress: bool = False, desc: str | None = None) -> dict[str, torch.Tensor]:
    """{tap: (N, D) float32 pooled features} with one pooling: `extract_pools` for a single pool."""
    parse_pool(pool)
    return extract_pools(teacher, data, t, taps, input, [pool], batch_size, seed, split, noise_draws,
                         progress, desc)[pool]


def pixels(data: ImageSet) -> torch.Tensor:
    """The raw-pixel baseline's features: every image flattened, in [-1, 1], float32."""
    return data.floats().flatten(1)
