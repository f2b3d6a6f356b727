import csv
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from diffrep import cli
from diffrep import data as data_lib
from diffrep.errors import UserError
from diffrep.probe import command, extract_pools, store_command
from diffrep.probe.store import FeatureStore, ShardWriter, npy_path, shard_path
from diffrep.probe.workers import Workers, default_workers
from diffrep.teacher import load_teacher

DATA = {**store_command.DEFAULTS["data"], "name": "digits", "train_size": 120, "test_size": 60}
GRID = {"timesteps": [500], "taps": ["down_blocks.1", "mid_block"], "inputs": ["clean", "noised"],
        "pool": ["gap", "grid:2"]}


def features_cfg(teacher_dir, out, **overrides) -> dict:
    """A `diffrep features` config with shards (50) that cut batches (32): images 0..49 end mid-batch."""
    return {**store_command.DEFAULTS, "teacher": str(teacher_dir), "data": {**DATA}, **GRID, "shard_size": 50,
            "batch_size": 32, "progress_bar": False, "out": str(out), **overrides}


def probe_cfg(teacher_dir, out, **overrides) -> dict:
    return {**command.DEFAULTS, "teacher": str(teacher_dir), "data": {**command.DEFAULTS["data"], **DATA}, **GRID,
            "batch_size": 32, "random_teacher": False, "progress_bar": False, "out": str(out), **overrides}


def probe_rows(out) -> list[dict]:
    return list(csv.DictReader((out / "probe.csv").open()))


@pytest.fixture(scope="module", autouse=True)
def no_plots():
    """The probe command's plots are tested in test_probe.py; here they would only take time."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(command, "plot", lambda rows, cfg, out: [])
        yield


@pytest.fixture(scope="module")
def stored(tiny_teacher_dir, tmp_path_factory):
    """One npy store (trained and random teacher) and the live probe of the same grid."""
    root = tmp_path_factory.mktemp("features")
    store_command.run(features_cfg(tiny_teacher_dir, root / "store", random_teacher=True))
    command.run(probe_cfg(tiny_teacher_dir, root / "live", random_teacher=True))
    return root


def test_probe_from_the_store_equals_the_live_probe(stored, tmp_path):
    command.run({**command.DEFAULTS, "features": str(stored / "store"), "progress_bar": False, "out": str(tmp_path)})
    assert probe_rows(tmp_path) == probe_rows(stored / "live")  # every column, noised inputs and random teacher too
    assert len(probe_rows(tmp_path)) == 1 + 2 * 2 * 2 * 2
    assert "stored features" in (tmp_path / "report.md").read_text()


def test_store_layout_manifest_and_shapes(stored, tiny_teacher_dir):
    manifest = json.loads((stored / "store" / "manifest.json").read_text())
    assert manifest["splits"]["train"] == {"n": 120, "shard_size": 50, "shards": [50, 50, 20]}
    assert manifest["shapes"]["mid_block"] == {"gap": [32], "grid:2": [32, 2, 2]}
    assert manifest["teachers"] == ["trained", "random"] and manifest["dtype"] == "float32"
    assert manifest["diffrep_version"] and manifest["teacher"] == str(tiny_teacher_dir)
    grid = np.load(npy_path(stored / "store", "trained", "noised", 500, "mid_block", "grid:2", "test"))
    assert grid.shape == (60, 32, 2, 2)
    teacher = load_teacher(tiny_teacher_dir)
    reader = FeatureStore(stored / "store")
    # the store's worker threads (channels_last copies when torch has 2+ threads) round differently from a plain
    # forward, so the live side runs through the same workers
    with Workers(default_workers(teacher)) as workers:
        live = extract_pools(teacher, data_lib.load(teacher.data_config(DATA), "test"), 500, ["mid_block"], "noised",
                             ["grid:2"], batch_size=32, split="test", workers=workers)["grid:2"]["mid_block"]
    torch.testing.assert_close(torch.from_numpy(grid).flatten(1), live, rtol=0, atol=0)
    torch.testing.assert_close(reader.read("trained", "noised", 500, "mid_block", "grid:2", "test"), live,
                               rtol=0, atol=0)


def test_safetensors_full_maps_and_float16(tiny_teacher_dir, stored, tmp_path):
    cfg = features_cfg(tiny_teacher_dir, tmp_path / "st", format="safetensors", dtype="float16",
                       pool=["full", "gap"], timesteps=[500], inputs=["clean"])
    store_command.run(cfg)
    shard = load_file(shard_path(tmp_path / "st", "trained", "clean", 500, "train", 1))
    assert shard["mid_block/full"].shape == (50, 32, 2, 2) and shard["mid_block/full"].dtype == np.float16
    npy = FeatureStore(stored / "store")
    half = FeatureStore(tmp_path / "st")
    for pool in ("gap", "grid:2"):  # grid:2 is not stored: pooled from the full maps when read
        reference = npy.read("trained", "clean", 500, "down_blocks.1", pool, "train")
        torch.testing.assert_close(half.read("trained", "clean", 500, "down_blocks.1", pool, "train"), reference,
                                   rtol=2e-3, atol=2e-3)
    index = torch.tensor([3, 49, 50, 119])
    torch.testing.assert_close(half.read("trained", "clean", 500, "mid_block", "gap", "train", index),
                               half.read("trained", "clean", 500, "mid_block", "gap", "train")[index])


def test_a_killed_run_resumes_at_the_first_missing_shard(tiny_teacher_dir, stored, tmp_path, monkeypatch):
    cfg = features_cfg(tiny_teacher_dir, tmp_path / "store", random_teacher=True)
    real, commits = ShardWriter.commit, []

    def crash(shard):
        if len(commits) == 7:  # the eighth shard's rows are in the memmaps but never counted
            raise KeyboardInterrupt
        commits.append(shard.key)
        real(shard)

    monkeypatch.setattr(ShardWriter, "commit", crash)
    with pytest.raises(KeyboardInterrupt):
        store_command.run(cfg)
    monkeypatch.setattr(ShardWriter, "commit", real)
    with pytest.raises(UserError, match="already holds a feature store; pass --resume"):
        store_command.run(cfg)
    with pytest.raises(UserError, match="cannot resume: .* holds taps"):
        store_command.run({**cfg, "taps": ["mid_block"]}, resume=True)
    with pytest.raises(UserError, match="incomplete .7 of 20 shards"):
        FeatureStore(tmp_path / "store")
    metrics = store_command.run(cfg, resume=True)
    assert metrics["shards_written"] == 20 - 7
    for path in sorted((stored / "store" / "npy").rglob("*.npy")):
        resumed = tmp_path / "store" / path.relative_to(stored / "store")
        assert resumed.read_bytes() == path.read_bytes(), path


def test_probe_from_a_store_checks_what_it_asks_for(stored, tmp_path, capsys):
    base = {**command.DEFAULTS, "features": str(stored / "store"), "progress_bar": False, "out": str(tmp_path)}
    with pytest.raises(UserError, match=r"no taps up_blocks.0 in the feature store; .* taps down_blocks.1, mid_block;"):
        command.run({**base, "taps": "mid_block,up_blocks.0"})
    with pytest.raises(UserError, match="no pools grid:4 in the feature store"):
        command.run({**base, "pool": "grid:4"})
    with pytest.raises(UserError, match="no timesteps 10 in"):
        command.run({**base, "timesteps": "10,500"})
    with pytest.raises(UserError, match="holds features of data.train_size = 120"):
        command.run({**base, "data": {**command.DEFAULTS["data"], "train_size": 100}})
    with pytest.raises(UserError, match="no feature store at"):
        command.run({**base, "features": str(tmp_path)})
    code = cli.main(["probe", "--features", str(stored / "store"), "--inputs", "clean,blurred", "--out",
                     str(tmp_path / "cli")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown input 'blurred'" in err


def test_probe_from_a_store_with_a_label_fraction_and_a_subgrid(stored, tiny_teacher_dir, tmp_path):
    command.run({**command.DEFAULTS, "features": str(stored / "store"), "data": {**command.DEFAULTS["data"],
                 "labels": 0.5}, "taps": "mid_block", "inputs": "clean", "timesteps": "500",
                 "random_teacher": False, "progress_bar": False, "out": str(tmp_path / "stored")})
    halved = {**command.DEFAULTS["data"], **DATA, "labels": 0.5}
    command.run(probe_cfg(tiny_teacher_dir, tmp_path / "live", data=halved, taps="mid_block", inputs="clean",
                          timesteps="500"))
    rows = probe_rows(tmp_path / "stored")
    assert rows == probe_rows(tmp_path / "live") and len(rows) == 3
    assert json.loads((tmp_path / "stored" / "metrics.json").read_text())["train_size"] == 60
