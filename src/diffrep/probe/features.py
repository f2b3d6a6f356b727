"""Streaming pooled features: one early-exit teacher pass per batch for all taps, pooled at once.

Full feature maps of a whole split would not fit in memory (60k x 128 x 16 x 16 floats is 7.9 GB),
so each batch's maps are average-pooled right away and only the pooled float32 vectors are kept
(`extract_pools`), or written to disk batch by batch (`diffrep features`, through `pooled_batches`).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from diffrep import console
from diffrep.data import ImageSet
from diffrep.errors import UserError
from diffrep.probe.workers import Workers
from diffrep.teacher import Teacher

SPLIT_STREAMS = {"train": 0, "test": 1}  # noise streams differ between splits, so no noise is shared
FULL = 0  # parse_pool("full"): the whole map, not pooled


def parse_pool(pool) -> int:
    """'gap' -> 1, 'grid:K' -> K (a K x K adaptive-average-pooled grid, flattened), 'full' -> FULL (the map)."""
    if pool == "gap":
        return 1
    if pool == "full":
        return FULL
    match = re.fullmatch(r"grid:(\d+)", str(pool).strip())
    if not match or int(match.group(1)) < 1:
        raise UserError(f"bad pool '{pool}' (gap, grid:K with K >= 1 such as grid:2, or full)")
    return int(match.group(1))


def pooled_shape(shape: tuple[int, ...], grid: int) -> tuple[int, int, int]:
    """(C, h, w) after pooling a (C, H, W) map: a grid never finer than the map itself; FULL keeps the map."""
    c, h, w = shape
    return (c, h, w) if grid == FULL else (c, min(grid, h), min(grid, w))


def pool_map(feature: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C * h * w) float32, h = min(grid, H), w = min(grid, W); FULL flattens the map."""
    if grid == FULL:
        return feature.float().flatten(1)
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
        raise UserError("no pool given (gap, grid:K, full, or a list such as gap,grid:4)")
    for pool in pools:
        parse_pool(pool)
    return pools


def pooled_batches(teacher: Teacher, data: ImageSet, t: int, taps: list[str], input: str = "clean",
                   pools=("gap",), batch_size: int = 256, seed: int = 0, split: str = "train",
                   noise_draws: int = 1, start: int = 0, stop: int | None = None, workers: Workers | int = 1
                   ) -> Iterator[tuple[slice, dict[str, dict[str, torch.Tensor]]]]:
    """(rows, {pool: {tap: (len(rows), D) float32}}) for the images start..stop of `data`, batch by batch, in order.

    Batches are the split's own (b * batch_size ...), computed whole (with the noise of batch b) and cut at start
    and stop: rows 0..N in any pieces (a store's shards) get exactly the features one `extract_pools` over the
    whole split gives them; pieces that are multiples of batch_size waste no work. workers > 1 (or a `Workers`)
    computes batches in parallel threads, each with its own copy of the teacher.
    """
    taps = teacher.check_taps(taps)
    grids = {pool: parse_pool(pool) for pool in parse_pools(pools)}
    if batch_size < 1 or noise_draws < 1:
        raise UserError(f"batch_size and noise_draws must be >= 1, got {batch_size} and {noise_draws}")
    stop = len(data) if stop is None else min(stop, len(data))
    draws = noise_draws if input == "noised" else 1
    batches = range(start // batch_size, math.ceil(stop / batch_size))

    def one(pool: Workers, b: int):
        return _batch(pool.teacher(teacher), data, t, taps, input, grids, batch_size, seed, split, draws, b,
                      max(b * batch_size, start), min((b + 1) * batch_size, stop))

    if isinstance(workers, Workers):
        return workers.map(lambda b: one(workers, b), batches)
    return _own_workers(workers, one, batches)


def _own_workers(n: int, one, batches) -> Iterator:
    with Workers(n) as pool:
        yield from pool.map(lambda b: one(pool, b), batches)


@torch.no_grad()
def _batch(teacher: Teacher, data: ImageSet, t: int, taps: list[str], input: str, grids: dict[str, int],
           batch_size: int, seed: int, split: str, draws: int, b: int, lo: int, hi: int):
    """Rows lo..hi of batch b: (rows, {pool: {tap: pooled}}), averaged over noise draws. The whole batch goes
    through the teacher even when only part of it is asked for: a convolution's result can depend on the batch
    size in its last bits, and stored features must equal live ones bit for bit."""
    first = b * batch_size
    x = data.floats(slice(first, first + batch_size))
    pooled = {}
    for d in range(draws):
        noise = torch.randn(x.shape, generator=noise_generator(seed, split, b, d)) if input == "noised" else None
        feats = teacher.features(x, t, taps, input=input, noise=noise)
        for pool, grid in grids.items():
            for tap in taps:
                value = pool_map(feats[tap][lo - first:hi - first], grid).cpu()
                if d == 0:
                    pooled.setdefault(pool, {})[tap] = value
                else:
                    pooled[pool][tap] += value
    if draws > 1:
        for by_tap in pooled.values():
            for tap in taps:
                by_tap[tap] /= draws
    return slice(lo, hi), pooled


def extract_pools(teacher: Teacher, data: ImageSet, t: int, taps: list[str], input: str = "clean",
                  pools=("gap",), batch_size: int = 256, seed: int = 0, split: str = "train",
                  noise_draws: int = 1, progress: bool = False, desc: str | None = None,
                  workers: Workers | int = 1) -> dict[str, dict[str, torch.Tensor]]:
    """{pool: {tap: (N, D) float32 pooled features}} of every image in `data` at timestep t.

    Every pooling of every tap comes from the same forward passes, so extra poolings cost almost nothing.
    input="noised" averages the pooled features of `noise_draws` noisy copies x_t of each image
    (noise from `noise_generator`, so it depends on batch_size too); "clean" ignores noise_draws.
    progress=True shows a bar when stderr is a terminal; workers: see `pooled_batches`.
    """
    batches = pooled_batches(teacher, data, t, taps, input, pools, batch_size, seed, split, noise_draws,
                             workers=workers)
    taps, grids = teacher.check_taps(taps), {pool: parse_pool(pool) for pool in parse_pools(pools)}
    n = len(data)
    out = {pool: {tap: torch.empty(n, int(np.prod(pooled_shape(teacher.taps[tap][0], grid)))) for tap in taps}
           for pool, grid in grids.items()}
    for rows, pooled in console.bar(batches, progress, total=math.ceil(n / batch_size), desc=desc, leave=False,
                                    unit="batch"):
        for pool, by_tap in pooled.items():
            for tap, value in by_tap.items():
                out[pool][tap][rows] = value
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
