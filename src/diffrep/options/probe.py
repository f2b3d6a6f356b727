"""`diffrep probe` and `diffrep features`."""
from __future__ import annotations

from diffrep.options.blocks import DATA, DATA_RULES, PROBE, PROBE_RULES

PROBE_COMMAND = {
    "teacher": None,            # a teacher of any family (see diffrep teacher info); default: the shipped one
    "data": {**DATA, "resolution": None, "channels": None},  # null: the teacher's
    "timesteps": None,          # list or "0,10,50"; null: 0,10,50,100,250,500,750,999 (scaled to T)
    "taps": None,               # list or "mid_block,up_blocks.0"; null: one per stage (see default_taps)
    "inputs": ["clean", "noised"],
    "pool": "gap",              # gap | grid:K (K x K average-pooled grid, flattened) | full | several: gap,grid:2
    "noise_draws": 1,           # noised input: average the pooled features of this many noise draws
    "batch_size": 256,
    "random_teacher": True,     # also probe a randomly initialised teacher of the same architecture
    "probe": {**PROBE},
    # a `diffrep features` store (its OUT) to probe instead of running the teacher: teacher, data set (but for
    # data.labels) and noise come from its manifest; timesteps, taps, inputs and pool left at their defaults
    # mean all the store holds, others must be in it
    "features": None,
    "progress_bar": True,
    "seed": 0,
    "out": "runs/probe",
}
PROBE_COMMAND_RULES = {**DATA_RULES, **PROBE_RULES, "timesteps": "ints>=0|null", "noise_draws": "int>=1",
                       "batch_size": "int>=1", "random_teacher": "bool", "progress_bar": "bool", "seed": "int>=0"}

FEATURES = {
    "teacher": None,            # a teacher of any family (see diffrep teacher info); default: the shipped one
    # null: the teacher's; no labels or hflip (a label fraction is the probe's: diffrep probe --data.labels)
    "data": {**{k: v for k, v in DATA.items() if k not in ("labels", "hflip")}, "resolution": None, "channels": None},
    "splits": ["train", "test"],  # the splits to store (list or "train,test")
    "timesteps": None,          # list or "0,10,50"; null: 0,10,50,100,250,500,750,999 (scaled to T)
    "taps": None,               # list or "mid_block,up_blocks.0"; null: one per stage (as diffrep probe)
    "inputs": ["clean", "noised"],
    "pool": "gap",              # gap | grid:K | full (the whole (C, H, W) map) | several: gap,grid:2,full
    "random_teacher": False,    # also store a randomly initialised teacher's features (as diffrep probe's)
    "format": "npy",            # npy: one .npy memmap per (teacher, input, t, tap, pool, split) | safetensors:
                                # one file per (teacher, input, t, split, shard)
    "dtype": "float32",         # float32 | float16 (half the disk; features beyond float16's range are an error)
    "shard_size": 4096,         # images per shard: the unit of resuming and of memory (RSS grows with it, not N)
    "noise_draws": 1,           # noised input: average the pooled features of this many noise draws
    "batch_size": 256,
    "progress_bar": True,
    "seed": 0,
    "out": "runs/features",
}
FEATURES_RULES = {**DATA_RULES, "timesteps": "ints>=0|null", "random_teacher": "bool",
                  "format": "in:npy,safetensors", "dtype": "in:float32,float16", "shard_size": "int>=1",
                  "noise_draws": "int>=1", "batch_size": "int>=1", "progress_bar": "bool", "seed": "int>=0"}
