"""A feature store: a teacher's features of a data set on disk, written shard by shard, read back by the probe.

Layout of a store (the OUT of `diffrep features`):

    manifest.json       what is inside (teacher, data set, splits with their shard sizes, taps, timesteps, inputs,
                        pools, dtype, shapes, diffrep version) and how many shards of each pass are complete
    labels-<split>.npy  the labels, so that a probe can check it reads the same images
    npy/<teacher>/<input>/t<t>/<tap>/<pool>-<split>.npy            format npy: one (N, *shape) array each
    safetensors/<teacher>/<input>/t<t>/<split>-<shard>.safetensors  format safetensors: "<tap>/<pool>" tensors

A pass is (teacher, input, t): "trained" or "random" teacher, "clean" or "noised" input. Per image, gap stores
(C,), grid:K (C, h, w) and full (C, H, W); the probe flattens them. A shard counts once it is whole: safetensors
shards go to a temporary file that is renamed, npy rows are flushed, and only then is the manifest (itself
replaced atomically) told, so a killed run resumes at the first shard the manifest does not count.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from diffrep import __version__
from diffrep.errors import UserError
from diffrep.probe.features import FULL, parse_pool, pool_map, pooled_shape
from diffrep.run_dir import honour_umask, write_text_atomic

MANIFEST = "manifest.json"
DTYPES = {"float32": np.float32, "float16": np.float16}
# what the features are: a resumed run must ask for exactly these again
CONTENT_KEYS = ("format", "dtype", "teacher", "teachers", "data", "splits", "inputs", "timesteps", "taps", "pools",
                "shapes", "noise_draws", "seed", "batch_size")
READ_CHUNK = 4096  # rows per piece when pooling stored full maps on the fly


def stored_shape(tap_shape: tuple[int, int, int], pool: str) -> tuple[int, ...]:
    """Per-image shape of a stored pooling: gap (C,), grid:K (C, h, w), full (C, H, W)."""
    grid = parse_pool(pool)
    c, h, w = pooled_shape(tuple(tap_shape), grid)
    return (c,) if grid == 1 else (c, h, w)


def shard_sizes(n: int, shard_size: int) -> list[int]:
    return [min(shard_size, n - start) for start in range(0, n, shard_size)]


def pass_key(kind: str, mode: str, t: int, split: str) -> str:
    return f"{kind}/{mode}/t{t}/{split}"


def write_json(path: Path, obj: dict) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1) + "\n")


def npy_path(root: Path, kind: str, mode: str, t: int, tap: str, pool: str, split: str) -> Path:
    return root / "npy" / kind / mode / f"t{t}" / tap / f"{pool.replace(':', '')}-{split}.npy"


def shard_path(root: Path, kind: str, mode: str, t: int, split: str, index: int) -> Path:
    return root / "safetensors" / kind / mode / f"t{t}" / f"{split}-{index:05d}.safetensors"


def manifest_of(cfg: dict, teacher_path, teachers: list[str], taps: dict[str, tuple], sizes: dict[str, int]) -> dict:
    """The manifest of a store for a resolved `diffrep features` config (taps: {tap: (C, H, W)})."""
    return {"diffrep_version": __version__, "format": cfg["format"], "dtype": cfg["dtype"],
            "teacher": str(teacher_path) if teacher_path else None, "teachers": teachers, "data": cfg["data"],
            "splits": {split: {"n": n, "shard_size": cfg["shard_size"], "shards": shard_sizes(n, cfg["shard_size"])}
                       for split, n in sizes.items()},
            "inputs": cfg["inputs"], "timesteps": cfg["timesteps"], "taps": list(taps), "pools": cfg["pool"],
            "shapes": {tap: {pool: list(stored_shape(shape, pool)) for pool in cfg["pool"]}
                       for tap, shape in taps.items()},
            "noise_draws": cfg["noise_draws"], "seed": cfg["seed"], "batch_size": cfg["batch_size"]}


def passes(manifest: dict) -> list[tuple[str, str, int]]:
    return [(kind, mode, t) for kind in manifest["teachers"] for mode in manifest["inputs"]
            for t in manifest["timesteps"]]


class StoreWriter:
    """Creates a store (or reopens one to resume) and writes its shards, each whole or not at all."""

    def __init__(self, root: str | Path, manifest: dict, labels: dict[str, torch.Tensor], resume: bool):
        self.root = Path(root)
        self.dtype = DTYPES[manifest["dtype"]]
        path = self.root / MANIFEST
        if path.exists() and not resume:
            raise UserError(f"{self.root} already holds a feature store; pass --resume to continue it or "
                            f"--overwrite to start again")
        if path.exists():
            old = json.loads(path.read_text())
            for key in CONTENT_KEYS:
                if old.get(key) != manifest[key]:
                    raise UserError(f"cannot resume: the store at {self.root} holds {key} {old.get(key)!r}, this run "
                                    f"asks for {manifest[key]!r} (same options, another --out, or --overwrite)")
            self.manifest = old
            return
        self.root.mkdir(parents=True, exist_ok=True)
        for split, values in labels.items():
            np.save(self.root / f"labels-{split}.npy", values.numpy())
        if manifest["format"] == "npy":
            for kind, mode, t in passes(manifest):
                for split, info in manifest["splits"].items():
                    for tap, by_pool in manifest["shapes"].items():
                        for pool, shape in by_pool.items():
                            self._create_npy(npy_path(self.root, kind, mode, t, tap, pool, split), info["n"], shape)
        self.manifest = {**manifest, "done": {}}
        write_json(path, self.manifest)

    def _create_npy(self, path: Path, n: int, shape: list[int]) -> None:
        """An .npy file of the final size (sparse until written), created under a temporary name and renamed."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=self.dtype, shape=(n, *shape))
        del array
        os.replace(tmp, path)

    def done(self, kind: str, mode: str, t: int, split: str) -> int:
        """How many leading shards of this pass and split are complete."""
        return self.manifest["done"].get(pass_key(kind, mode, t, split), 0)

    def shard(self, kind: str, mode: str, t: int, split: str, index: int) -> ShardWriter:
        sizes = self.manifest["splits"][split]["shards"]
        start = sum(sizes[:index])
        return ShardWriter(self, kind, mode, t, split, index, slice(start, start + sizes[index]))

    def mark_done(self, kind: str, mode: str, t: int, split: str, index: int) -> None:
        self.manifest["done"][pass_key(kind, mode, t, split)] = index + 1
        write_json(self.root / MANIFEST, self.manifest)


class ShardWriter:
    """One shard of one pass and split: `put` rows of every (tap, pool) into it, then `commit`.

    npy: rows go straight into the split's memmap, opened for this shard only, so resident pages never exceed a
    shard; safetensors: rows fill a shard-sized buffer that is saved as one file."""

    def __init__(self, store: StoreWriter, kind: str, mode: str, t: int, split: str, index: int, rows: slice):
        self.store, self.key, self.index, self.rows = store, (kind, mode, t, split), index, rows
        self.arrays: dict[tuple[str, str], np.ndarray] = {}

    def _array(self, tap: str, pool: str) -> np.ndarray:
        if (tap, pool) not in self.arrays:
            kind, mode, t, split = self.key
            if self.store.manifest["format"] == "npy":
                path = npy_path(self.store.root, kind, mode, t, tap, pool, split)
                self.arrays[tap, pool] = np.lib.format.open_memmap(path, mode="r+")[self.rows]
            else:
                shape = self.store.manifest["shapes"][tap][pool]
                self.arrays[tap, pool] = np.empty((self.rows.stop - self.rows.start, *shape), self.store.dtype)
        return self.arrays[tap, pool]

    def put(self, rows: slice, tap: str, pool: str, value: torch.Tensor) -> None:
        """Rows (of the split) of one (tap, pool), as the probe's flattened float32 features."""
        array = self._array(tap, pool)
        if self.store.dtype == np.float16 and len(value):
            peak = float(value.abs().max())
            if not peak <= np.finfo(np.float16).max:
                raise UserError(f"features of {tap} at t = {self.key[2]} reach {peak:.4g}, beyond float16's range "
                                f"(65504); store them with --dtype float32")
        array[rows.start - self.rows.start:rows.stop - self.rows.start] = (
            value.reshape(len(value), *array.shape[1:]).numpy().astype(self.store.dtype))

    def commit(self) -> None:
        kind, mode, t, split = self.key
        if self.store.manifest["format"] == "npy":
            for array in self.arrays.values():
                array.flush()
        else:
            path = shard_path(self.store.root, kind, mode, t, split, self.index)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            save_file({f"{tap}/{pool}": array for (tap, pool), array in self.arrays.items()}, str(tmp),
                      metadata={"rows": f"{self.rows.start}:{self.rows.stop}"})
            os.replace(honour_umask(tmp), path)
        self.arrays.clear()  # unmaps the memmaps: their pages leave this process's RSS
        self.store.mark_done(kind, mode, t, split, self.index)


class FeatureStore:
    """A complete store, read as the probe's features: (N, D) float32 per (teacher, input, t, tap, pool, split)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise UserError(f"no feature store at {self.root} (no {MANIFEST}; `diffrep features --out {self.root}` "
                            f"writes one)")
        self.manifest = json.loads(path.read_text())
        total = sum(len(info["shards"]) for info in self.manifest["splits"].values()) * len(passes(self.manifest))
        done = sum(self.manifest["done"].get(pass_key(*key, split), 0)
                   for key in passes(self.manifest) for split in self.manifest["splits"])
        if done < total:
            raise UserError(f"the feature store at {self.root} is incomplete ({done} of {total} shards); finish it "
                            f"with `diffrep features --config {self.root / 'config.yaml'} --resume`")

    def labels(self, split: str) -> torch.Tensor:
        return torch.from_numpy(np.load(self.root / f"labels-{split}.npy"))

    def has_pool(self, pool: str) -> bool:
        """Stored, or computable from stored full maps."""
        return pool in self.manifest["pools"] or "full" in self.manifest["pools"]

    def _pieces(self, kind: str, mode: str, t: int, tap: str, pool: str, split: str):
        """(first row, array of consecutive rows) in row order."""
        if self.manifest["format"] == "npy":
            array = np.load(npy_path(self.root, kind, mode, t, tap, pool, split), mmap_mode="r")
            for start in range(0, len(array), READ_CHUNK):
                yield start, array[start:start + READ_CHUNK]
            return
        start = 0
        for index, size in enumerate(self.manifest["splits"][split]["shards"]):
            with safe_open(shard_path(self.root, kind, mode, t, split, index), framework="numpy") as fh:
                yield start, fh.get_tensor(f"{tap}/{pool}")
            start += size

    def read(self, kind: str, mode: str, t: int, tap: str, pool: str, split: str,
             index: torch.Tensor | None = None) -> torch.Tensor:
        """(N, D) float32 features (the rows `index`, sorted, when given); a pooling the store lacks is computed
        from its full maps."""
        source, grid = (pool, None) if pool in self.manifest["pools"] else ("full", parse_pool(pool))
        keep = None if index is None else np.asarray(index)
        parts = []
        for start, piece in self._pieces(kind, mode, t, tap, source, split):
            if keep is not None:
                piece = piece[keep[(keep >= start) & (keep < start + len(piece))] - start]
            value = torch.from_numpy(np.array(piece, dtype=np.float32))  # a copy: memmaps are read-only
            parts.append(pool_map(value, grid) if grid is not None and grid != FULL else value.flatten(1))
        return torch.cat(parts) if parts else torch.empty(0)
