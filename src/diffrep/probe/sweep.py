"""The probe sweep: every (teacher, input, t, tap) probed, plus the raw-pixel and random-teacher baselines."""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from diffrep import console
from diffrep.data import ImageSet
from diffrep.errors import UserError
from diffrep.probe.features import extract_pools, parse_pools, pixels
from diffrep.probe.linear import PROBE_DEFAULTS, probe
from diffrep.probe.rank import feature_rank
from diffrep.probe.workers import Workers, default_workers
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
    """One tap per UNet stage: each down block that changes the resolution, mid_block, up_blocks.0; for a family
    without those names (ADM, DiT), its default tap."""
    taps, size = [], teacher.model_shape[1]
    for name, (shape, _) in teacher.taps.items():
        if re.fullmatch(r"down_blocks\.\d+", name) and shape[1] != size:
            taps.append(name)
            size = shape[1]
    taps += [name for name in ("mid_block", "up_blocks.0") if name in teacher.taps]
    if not taps and teacher.default_tap in teacher.taps:
        taps = [teacher.default_tap]
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
    """A randomly initialised teacher of the same architecture and schedule (any family; a latent teacher keeps its
    VAE), seeded from `seed` through a hash (a plain manual_seed(seed) would reproduce any model that was itself
    initialised that way)."""
    return teacher.reinitialized(int(np.random.SeedSequence([int(seed), 0x52414E44]).generate_state(1)[0]))


def best(rows: list[dict], teacher: str = "trained", pool: str | None = None) -> dict | None:
    """The row with the highest accuracy for one teacher kind, optionally one pooling (ties: the earliest
    row, i.e. smallest t). The raw-pixel row is not pooled and is returned whatever `pool` says."""
    candidates = [row for row in rows if row["teacher"] == teacher and (pool is None or row["pool"] in ("", pool))]
    return max(candidates, key=lambda row: row["accuracy"]) if candidates else None


def run(teacher: Teacher, train_data: ImageSet, test_data: ImageSet, timesteps=None, taps=None,
        inputs=("clean", "noised"), pool="gap", noise_draws: int = 1, batch_size: int = 256,
        random_teacher: bool = True, weight_decay: float = PROBE_DEFAULTS["weight_decay"],
        max_iter: int = PROBE_DEFAULTS["max_iter"], seed: int = 0, progress: bool = True,
        timings: dict | None = None, workers: int | None = None) -> list[dict]:
    """Probe every (input, t, tap, pool) of `teacher` (and of a random teacher), plus raw pixels.

    `pool` is one pooling or several ("gap,grid:4"); all come from the same forward passes.
    Returns one dict per probe with the keys in COLUMNS; teacher is "trained", "random" or "pixels"
    (the pixel row has input "", t None, tap "", pool ""). `best(rows)["t"]` is the best fixed timestep.
    `timings`, when given, receives the seconds spent per stage (see `probe_passes`); `workers` (default: torch's
    thread count, 1 for a GPU teacher) parallel threads run the teacher batches and the probes (see workers.py).
    """
    timesteps = parse_timesteps(timesteps, teacher.num_timesteps)
    taps = parse_taps(teacher, taps)
    inputs = parse_inputs(inputs)
    pools = parse_pools(pool)
    teacher.check_images(train_data.floats(slice(0, 1)))
    models = {"trained": teacher} | ({"random": random_like(teacher, seed)} if random_teacher else {})
    passes = [(kind, mode, t) for kind in models for mode in inputs for t in timesteps]
    with Workers(default_workers(teacher) if workers is None else workers) as pool_of_workers:
        def features(kind: str, mode: str, t: int) -> dict[str, dict[str, dict[str, torch.Tensor]]]:
            return {split: extract_pools(models[kind], data, t, taps, mode, pools, batch_size, seed, split,
                                         noise_draws, workers=pool_of_workers)
                    for split, data in (("train", train_data), ("test", test_data))}

        return probe_passes(passes, features, taps, pools, train_data, test_data, weight_decay, max_iter,
                            progress, timings, pool_of_workers)


def probe_passes(passes: list[tuple[str, str, int]], features: Callable, taps: list[str], pools: list[str],
                 train_data: ImageSet, test_data: ImageSet, weight_decay: float, max_iter: int,
                 progress: bool = True, timings: dict | None = None, workers: Workers | None = None) -> list[dict]:
    """The pixel row, then every (tap, pool) of every pass (kind, input, t), whatever `features(kind, input, t)`
    reads them from ({split: {pool: {tap: (N, D)}}}: a teacher, or a store). One progress bar, per pass.

    `timings` receives the wall-clock seconds of the two stages, features_seconds (teacher passes, or reading a
    store) and probes_seconds (fits, effective ranks, norms), and how the workers' time in the second splits:
    fit_seconds (standardising, fitting, scoring) and rank_seconds, summed over workers.
    """
    timings = {} if timings is None else timings
    for key in ("features_seconds", "probes_seconds", "fit_seconds", "rank_seconds"):
        timings.setdefault(key, 0.0)
    workers, lock = workers or Workers(1), threading.Lock()
    probe_opts = {"weight_decay": weight_decay, "max_iter": max_iter, "num_classes": len(train_data.classes)}

    def measure(job: tuple) -> dict:
        kind, mode, t, tap, pool, train_x, test_x = job
        start = time.perf_counter()
        accuracy = probe(train_x, train_data.labels, test_x, test_data.labels, **probe_opts)
        middle = time.perf_counter()
        erank, count = feature_rank(train_x)
        row = {"teacher": kind, "input": mode, "t": t, "tap": tap, "pool": pool, "accuracy": accuracy,
               "erank_entropy": erank, "erank_count": count, "mean_norm": float(train_x.norm(dim=1).mean()),
               "dim": int(train_x.shape[1])}
        with lock:
            timings["fit_seconds"] += middle - start
            timings["rank_seconds"] += time.perf_counter() - middle
        return row

    def measure_all(jobs: list[tuple]) -> list[dict]:
        start = time.perf_counter()
        done = list(workers.map(measure, jobs))
        timings["probes_seconds"] += time.perf_counter() - start
        return done

    rows = measure_all([("pixels", "", None, "", "", pixels(train_data), pixels(test_data))])
    bar = console.bar(passes, progress, desc="probe", unit="pass")
    for kind, mode, t in bar:
        start = time.perf_counter()
        feats = features(kind, mode, t)
        timings["features_seconds"] += time.perf_counter() - start
        jobs = [(kind, mode, t, tap, pool, feats["train"][pool].pop(tap), feats["test"][pool].pop(tap))
                for pool in pools for tap in taps]
        del feats
        done = measure_all(jobs)
        rows += done
        top = max(done, key=lambda row: row["accuracy"])
        bar.set_postfix_str(f"{kind} {mode} t={t}: best {top['accuracy']:.4f} ({top['tap']}, {top['pool']})")
    return rows
