"""`diffrep features`: a teacher's features of a data set, stored on disk, so that probes can run without it.

    diffrep features --taps mid_block,down_blocks.2 --timesteps 10 --inputs clean --pool gap,grid:2 --out runs/feats
    diffrep probe --features runs/feats --probe.weight_decay 1e-3 --out runs/probe-wd1e-3

The same streaming, early-exit passes as `diffrep probe` (so the same features, noise included), written shard by
shard into a store (layout and manifest: diffrep.probe.store) instead of being kept in memory. Memory stays that of
one shard of one pass (shard_size images x that pass's taps and pools), whatever the size of the data set; a killed
run continues at the first incomplete shard with --resume.
"""
from __future__ import annotations

import resource
import time
from pathlib import Path

from diffrep import config as config_lib
from diffrep import console
from diffrep import data as data_lib
from diffrep.errors import UserError
from diffrep.options import probe as options
from diffrep.probe import store
from diffrep.probe.features import parse_pools, pooled_batches
from diffrep.probe.sweep import as_list, parse_inputs, parse_taps, parse_timesteps, random_like
from diffrep.probe.workers import Workers, default_workers
from diffrep.teacher import Teacher, teacher_from_config

DEFAULTS = options.FEATURES
SPLITS = ("train", "test")


def parse_splits(value) -> list[str]:
    splits = list(dict.fromkeys(as_list(value, "splits")))
    if not splits or any(split not in SPLITS for split in splits):
        raise UserError(f"bad splits {value!r} (train, test or train,test)")
    return splits


def resolve(cfg: dict, teacher: Teacher) -> dict:
    """The config with the teacher's resolution/channels, splits, timesteps, taps, inputs and pools checked."""
    cfg = {**cfg, "data": teacher.data_config(cfg["data"])}
    cfg["splits"] = parse_splits(cfg["splits"])
    cfg["timesteps"] = parse_timesteps(cfg["timesteps"], teacher.num_timesteps)
    cfg["taps"] = parse_taps(teacher, cfg["taps"])
    cfg["inputs"] = parse_inputs(cfg["inputs"])
    cfg["pool"] = parse_pools(cfg["pool"])
    for key in ("shard_size", "batch_size", "noise_draws"):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < 1:
            raise UserError(f"{key} must be a positive integer, got {cfg[key]!r}")
    if cfg["format"] not in ("npy", "safetensors") or cfg["dtype"] not in store.DTYPES:
        raise UserError(f"format must be npy or safetensors and dtype float32 or float16, got {cfg['format']!r} "
                        f"and {cfg['dtype']!r}")
    return cfg


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(cfg: dict, resume: bool = False) -> dict:
    start = time.perf_counter()
    teacher = teacher_from_config(cfg["teacher"])
    cfg = resolve(cfg, teacher)
    splits = {split: data_lib.load(cfg["data"], split) for split in cfg["splits"]}
    teacher.check_images(next(iter(splits.values())).floats(slice(0, 1)))
    models = {"trained": teacher} | ({"random": random_like(teacher, cfg["seed"])} if cfg["random_teacher"] else {})
    manifest = store.manifest_of(cfg, teacher.path, list(models), {tap: teacher.taps[tap][0] for tap in cfg["taps"]},
                                 {split: len(data) for split, data in splits.items()})
    out = Path(cfg["out"])
    writer = store.StoreWriter(out, manifest, {split: data.labels for split, data in splits.items()}, resume)
    (out / "config.yaml").write_text(config_lib.dump(cfg))
    todo = [(kind, mode, t, split, index) for kind, mode, t in store.passes(manifest) for split in splits
            for index in range(writer.done(kind, mode, t, split), len(manifest["splits"][split]["shards"]))]
    shards = sum(len(manifest["splits"][split]["shards"]) for split in splits) * len(store.passes(manifest))
    images = sum(manifest["splits"][split]["shards"][index] for *_, split, index in todo)
    resumed = f"; resuming, {shards - len(todo)} of {shards} shards done" if len(todo) < shards else ""
    print(f"storing {len(cfg['taps'])} taps x {len(cfg['timesteps'])} timesteps x {len(cfg['inputs'])} inputs x "
          f"{len(cfg['pool'])} pools of {teacher.path or 'the teacher'} ({', '.join(models)}) for "
          + ", ".join(f"{len(data)} {split}" for split, data in splits.items())
          + f" {cfg['data']['name']} images as {cfg['format']} {cfg['dtype']} -> {out}{resumed}")
    bar = console.bar(None, cfg["progress_bar"], total=images, desc="features", unit="img")
    with Workers(default_workers(teacher)) as workers:
        for kind, mode, t, split, index in todo:
            shard = writer.shard(kind, mode, t, split, index)
            for rows, pooled in pooled_batches(models[kind], splits[split], t, cfg["taps"], mode, cfg["pool"],
                                               cfg["batch_size"], cfg["seed"], split, cfg["noise_draws"],
                                               shard.rows.start, shard.rows.stop, workers):
                for pool, by_tap in pooled.items():
                    for tap, value in by_tap.items():
                        shard.put(rows, tap, pool, value)
                bar.update(rows.stop - rows.start)
            shard.commit()
    bar.close()
    seconds = time.perf_counter() - start
    metrics = {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "images_processed": images, "shards": shards, "shards_written": len(todo), "bytes": _size(out)}
    store.write_json(out / "metrics.json", metrics)
    print(f"stored {shards} shards ({metrics['bytes'] / 2 ** 20:.1f} MiB; {len(todo)} written now, {images} images "
          f"in {seconds:.0f} s, peak RSS {metrics['peak_rss_mb']:.0f} MiB) in {out}; probe them with "
          f"`diffrep probe --features {out}`")
    return metrics
