"""`diffrep probe --features DIR`: probe a feature store instead of running the teacher.

The store's manifest says what the features are, so it decides the teacher, the data set (all but data.labels, a
label fraction the probe applies to the stored train rows) and the noise (noise_draws, seed, batch_size). Of the
grid, an option left at its default means everything the store holds; any other value must be in the store, and
a request it cannot serve is one error line that lists what the store has. The random teacher is probed when the
store holds its features (`diffrep features --random_teacher true`); the raw-pixel baseline comes from the data.
With a label fraction, noised features keep the noise of their place in the whole split (a live probe batches the
kept images anew, so its noise differs); clean features are the same either way.
"""
from __future__ import annotations

from pathlib import Path

import torch

from diffrep.data import ImageSet, stratified_subset
from diffrep.errors import UserError
from diffrep.probe.features import parse_pools
from diffrep.probe.store import FeatureStore
from diffrep.probe.sweep import as_list, parse_inputs, parse_timesteps


def _listed(values) -> str:
    return ", ".join(map(str, values))


def available(store: FeatureStore) -> str:
    m = store.manifest
    pools = list(m["pools"]) + (["(any gap or grid:K, from full)"] if "full" in m["pools"] else [])
    return (f"the store at {store.root} holds teachers {_listed(m['teachers'])}; inputs {_listed(m['inputs'])}; "
            f"timesteps {_listed(m['timesteps'])}; taps {_listed(m['taps'])}; pools {_listed(pools)}")


def _subset(store: FeatureStore, what: str, asked: list, have: list) -> list:
    missing = [item for item in asked if item not in have]
    if missing:
        raise UserError(f"no {what} {_listed(missing)} in the feature store; {available(store)}")
    return asked


def resolve(cfg: dict, defaults: dict, store: FeatureStore) -> dict:
    """The probe config with the store's teacher, data, noise and (where cfg keeps the defaults) grid; checked."""
    m = store.manifest
    cfg = {**cfg, "probe": {**cfg["probe"]}}
    for key, value in cfg["data"].items():
        if key != "labels" and value != defaults["data"].get(key) and value != m["data"].get(key):
            raise UserError(f"--data.{key} {value!r}: the feature store at {store.root} holds features of "
                            f"data.{key} = {m['data'].get(key)!r}; drop --data.{key}")
    cfg["data"] = {**m["data"], "labels": cfg["data"]["labels"]}
    for key in ("teacher", "noise_draws", "seed", "batch_size"):
        if cfg[key] != defaults[key] and cfg[key] != m[key]:
            raise UserError(f"--{key} {cfg[key]!r}: the feature store at {store.root} was written with "
                            f"{key} {m[key]!r}; drop --{key}")
        cfg[key] = m[key]
    if "train" not in m["splits"] or "test" not in m["splits"]:
        raise UserError(f"the feature store at {store.root} holds the {_listed(m['splits'])} split only; the probe "
                        f"needs train and test (diffrep features --splits train,test)")
    cfg["timesteps"] = list(m["timesteps"]) if cfg["timesteps"] is None else _subset(
        store, "timesteps", parse_timesteps(cfg["timesteps"], 10 ** 9), m["timesteps"])
    if cfg["taps"] is None:
        cfg["taps"] = list(m["taps"])
    else:
        asked = _subset(store, "taps", list(dict.fromkeys(as_list(cfg["taps"], "taps"))), m["taps"])
        cfg["taps"] = [tap for tap in m["taps"] if tap in asked]  # execution order, as diffrep probe
    inputs = parse_inputs(cfg["inputs"])
    cfg["inputs"] = list(m["inputs"]) if inputs == parse_inputs(defaults["inputs"]) else _subset(
        store, "inputs", inputs, m["inputs"])
    pools = parse_pools(cfg["pool"])
    if pools == parse_pools(defaults["pool"]):
        cfg["pool"] = list(m["pools"])
    else:
        cfg["pool"] = _subset(store, "pools", pools, [p for p in pools if store.has_pool(p)])
    cfg["random_teacher"] = bool(cfg["random_teacher"]) and "random" in m["teachers"]  # the report says if not run
    return cfg


def check_split(store: FeatureStore, data: ImageSet, split: str) -> None:
    """The data set's split must be the one the store was written from (same images in the same order)."""
    stored = store.labels(split)
    if len(stored) != len(data) or not torch.equal(stored, data.labels):
        raise UserError(f"the {split} split of {store.manifest['data']['name']} ({len(data)} images) is not the one "
                        f"the feature store at {store.root} holds ({len(stored)} images); has the data changed?")


def train_rows(store: FeatureStore, train: ImageSet, labels) -> torch.Tensor | None:
    """Rows of the stored train split that the label fraction `labels` keeps (None: all of them)."""
    if labels in (None, 1, 1.0):
        return None
    return stratified_subset(train.labels, float(labels), store.manifest["data"]["seed"])


def reader(store: FeatureStore, taps: list[str], pools: list[str], rows: torch.Tensor | None):
    """features(kind, input, t) -> {split: {pool: {tap: (N, D)}}} for `sweep.probe_passes`."""
    def features(kind: str, mode: str, t: int) -> dict:
        return {split: {pool: {tap: store.read(kind, mode, t, tap, pool, split, rows if split == "train" else None)
                               for tap in taps} for pool in pools} for split in ("train", "test")}
    return features


def open_store(path) -> FeatureStore:
    if not Path(path).is_dir():
        raise UserError(f"feature store not found: {path} (the --out of diffrep features)")
    return FeatureStore(path)
