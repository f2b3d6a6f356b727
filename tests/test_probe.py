import csv
import json

import pytest
import torch
import torch.nn.functional as F

from conftest import run_cli
from diffrep import cli
from diffrep.data import DATA_DEFAULTS, ImageSet, load
from diffrep.errors import UserError
from diffrep.probe import (best, default_taps, default_timesteps, effective_rank, extract, feature_rank, probe,
                           random_like, run, singular_values)
from diffrep.probe import command
from diffrep.probe.features import extract_pools, parse_pool, parse_pools
from diffrep.probe.sweep import COLUMNS, parse_inputs, parse_timesteps
from diffrep.teacher import load_teacher

TINY_DATA = {**DATA_DEFAULTS, "name": "digits", "resolution": 16, "train_size": 200, "test_size": 100}


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir):
    return load_teacher(tiny_teacher_dir)


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (10, 1, 16, 16), dtype=torch.uint8, generator=gen),
                    torch.arange(10) % 2, ["a", "b"])


def blobs(n, d, classes, spread, seed):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=gen) * 5
    y = torch.arange(n) % classes
    return centres[y] + spread * torch.randn(n, d, generator=gen), y


def test_probe_separates_separable_data_and_is_at_chance_on_random_labels():
    x, y = blobs(600, 20, 4, 0.5, 0)
    assert probe(x[:300], y[:300], x[300:], y[300:]) == 1.0
    gen = torch.Generator().manual_seed(1)
    noise, labels = torch.randn(800, 20, generator=gen), torch.randint(0, 4, (800,), generator=gen)
    acc = probe(noise[:400], labels[:400], noise[400:], labels[400:])
    assert 0.15 < acc < 0.35  # chance is 0.25, one standard error 0.022
    assert acc == probe(noise[:400], labels[:400], noise[400:], labels[400:])  # deterministic


def test_effective_rank_of_known_spectra_and_ranks():
    assert effective_rank(torch.ones(5)) == pytest.approx((5.0, 5))
    assert effective_rank(torch.tensor([2.0, 0, 0])) == pytest.approx((1.0, 1))
    gen = torch.Generator().manual_seed(0)
    for n, d in ((300, 40), (20, 100)):  # the D x D Gram and, when D > N, the N x N one
        x = torch.randn(n, 3, generator=gen) @ torch.randn(3, d, generator=gen) + 7.0  # rank 3 after centring
        erank, count = feature_rank(x)
        assert count == 3 and 1.0 < erank <= 3.0
        reference = torch.linalg.svdvals((x - x.mean(0)).double())
        torch.testing.assert_close(singular_values(x)[:3], reference[:3], rtol=1e-4, atol=1e-4)


def test_parsing_of_grids_pools_and_inputs(teacher):
    assert default_timesteps(1000) == [0, 10, 50, 100, 250, 500, 750, 999]
    assert max(default_timesteps(500)) == 499
    assert parse_timesteps("50,0,10", 1000) == [0, 10, 50] == parse_timesteps([10, 50, 0, 0], 1000)
    assert parse_timesteps(5, 1000) == [5]
    for bad in ("0,x", "0,,5", "5,1000", -1, 2.5):
        with pytest.raises(UserError):
            parse_timesteps(bad, 1000)
    assert parse_pool("gap") == 1 and parse_pool("grid:3") == 3 and parse_pool("full") == 0
    for bad in ("grid:0", "grid:", "avg", "grid:-1"):
        with pytest.raises(UserError, match="bad pool"):
            parse_pool(bad)
    assert parse_inputs("noised,clean") == ["noised", "clean"]
    with pytest.raises(UserError, match="unknown input 'blurred'"):
        parse_inputs("clean,blurred")
    assert default_taps(teacher) == ["down_blocks.0", "down_blocks.1", "down_blocks.2", "mid_block", "up_blocks.0"]


@pytest.mark.parametrize("pool", ["gap", "grid:2", "grid:8", "full"])
def test_streamed_pooled_features_equal_pooling_full_features(teacher, images, pool):
    taps = ["down_blocks.0", "mid_block"]
    streamed = extract(teacher, images, 50, taps, pool=pool, batch_size=3)
    full = teacher.features(images.floats(), 50, taps)
    grid = parse_pool(pool) or 99  # full: the whole map
    for tap in taps:
        size = min(grid, full[tap].shape[-1])
        torch.testing.assert_close(streamed[tap], F.adaptive_avg_pool2d(full[tap], size).flatten(1),
                                   rtol=1e-5, atol=1e-5)
    assert streamed["mid_block"].shape == (10, 32 * min(grid, 2) ** 2)  # grid:8 is capped at the 2x2 map


def recorded_inputs(model, fn):
    """The UNet inputs x_t seen while running fn()."""
    model.taps  # discovered once, by a forward pass of its own
    seen = []
    handle = model.unet.conv_in.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    try:
        result = fn()
    finally:
        handle.remove()
    return torch.cat(seen), result


def test_noised_features_are_reproducible_and_paired_across_t_and_teachers(teacher, images):
    x0 = images.floats()
    noised = lambda model, t, seed=0, draws=1: extract(  # noqa: E731
        model, images, t, ["mid_block"], "noised", batch_size=4, seed=seed, noise_draws=draws)["mid_block"]
    torch.testing.assert_close(noised(teacher, 100), noised(teacher, 100), rtol=0, atol=0)
    assert not torch.allclose(noised(teacher, 100), noised(teacher, 100, seed=1))

    def eps(model, t):
        x_t, _ = recorded_inputs(model, lambda: noised(model, t))
        abar = teacher.alphas_cumprod[t]
        return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()

    reference = eps(teacher, 100)
    torch.testing.assert_close(eps(teacher, 700), reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(eps(random_like(teacher), 700), reference, rtol=1e-4, atol=1e-4)

    # two draws: the average of the pooled features of both noisy copies; the first draw is the one-draw noise
    x_t, averaged = recorded_inputs(teacher, lambda: noised(teacher, 300, draws=2))
    one = teacher.features(x_t, 300, "mid_block")["mid_block"].mean((2, 3))
    chunks = one.split([4, 4, 4, 4, 2, 2])  # batches of 4, 4 and 2 images, each seen as draw 0 then draw 1
    direct = torch.cat([(chunks[i] + chunks[i + 1]) / 2 for i in (0, 2, 4)])
    torch.testing.assert_close(averaged, direct, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_t[:4], recorded_inputs(teacher, lambda: noised(teacher, 300))[0][:4])


def test_several_pools_come_from_one_pass_and_equal_single_pool_extraction(teacher, images):
    assert parse_pools("gap, grid:2,gap") == ["gap", "grid:2"] and parse_pools(["grid:4"]) == ["grid:4"]
    with pytest.raises(UserError, match="bad pool 'grid'"):
        parse_pools("gap,grid")
    passes = []
    handle = teacher.unet.conv_in.register_forward_hook(lambda *args: passes.append(1))
    try:
        both = extract_pools(teacher, images, 50, ["mid_block", "down_blocks.1"], "noised", ["gap", "grid:2"],
                             batch_size=4)
    finally:
        handle.remove()
    assert len(passes) == 3  # 10 images in batches of 4: one pass per batch for both pools and both taps
    for pool in ("gap", "grid:2"):
        single = extract(teacher, images, 50, ["mid_block", "down_blocks.1"], "noised", pool, batch_size=4)
        for tap in single:
            torch.testing.assert_close(both[pool][tap], single[tap], rtol=0, atol=0)


def test_run_returns_rows_and_the_best_timestep(teacher, capsys):
    data = {**TINY_DATA, "train_size": 100, "test_size": 50}
    timings = {}
    rows = run(teacher, load(data, "train"), load(data, "test"), timesteps="0,900", taps="mid_block",
               inputs="clean", progress=True, timings=timings)
    assert capsys.readouterr().out == ""  # one progress bar (stderr, terminals only), no line per pass
    assert timings["features_seconds"] > 0 and timings["probes_seconds"] >= timings["fit_seconds"] / 2 > 0
    assert [(r["teacher"], r["t"]) for r in rows] == [("pixels", None), ("trained", 0), ("trained", 900),
                                                      ("random", 0), ("random", 900)]
    assert all(set(r) == set(COLUMNS) for r in rows)
    assert best(rows)["t"] in (0, 900) and best(rows)["accuracy"] == max(r["accuracy"] for r in rows[1:3])
    assert rows[0]["dim"] == 256 and rows[1]["dim"] == 32 and rows[1]["erank_count"] <= 32
    assert rows[1]["mean_norm"] != rows[3]["mean_norm"]  # the random teacher is another network
    assert rows[0]["accuracy"] > 0.5  # raw pixels separate digits well


def test_probe_reaches_the_optimum_on_correlated_features():
    """256 features from 16 factors (a UNet's features are as correlated; there, plain L-BFGS stopped 1-2 points
    short after 50 iterations): 50 iterations reach scikit-learn's optimum of the same objective, loss and accuracy."""
    from sklearn.linear_model import LogisticRegression

    from diffrep.probe.linear import accuracy, fit_logistic, standardise
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(3000) % 5
    factors = 0.7 * torch.randn(5, 16, generator=gen)[labels] + torch.randn(3000, 16, generator=gen)
    x = factors @ torch.randn(16, 256, generator=gen) + 0.1 * torch.randn(3000, 256, generator=gen)
    train, test = standardise(x[:2000], x[2000:])
    decay = 1e-4

    def loss(weight, bias):
        return float(F.cross_entropy(F.linear(train, weight, bias), labels[:2000]) + decay * weight.square().sum())

    reference = LogisticRegression(C=1 / (2 * decay * 2000), tol=1e-6, max_iter=20000).fit(train.numpy(),
                                                                                        labels[:2000].numpy())
    weight, bias = fit_logistic(train, labels[:2000], 5, decay, 50)
    assert loss(weight, bias) <= 1.001 * loss(*(torch.from_numpy(v).float() for v in (reference.coef_,
                                                                                     reference.intercept_)))
    assert accuracy(test, labels[2000:], weight, bias) == pytest.approx(
        reference.score(test.numpy(), labels[2000:].numpy()), abs=0.0025)


def test_worker_threads_give_the_features_and_probes_of_one_thread(teacher):
    data = {**TINY_DATA, "train_size": 100, "test_size": 50}
    train, test = load(data, "train"), load(data, "test")
    one = extract_pools(teacher, train, 300, ["mid_block"], "noised", ["gap"], batch_size=16)
    two = extract_pools(teacher, train, 300, ["mid_block"], "noised", ["gap"], batch_size=16, workers=2)
    torch.testing.assert_close(two["gap"]["mid_block"], one["gap"]["mid_block"], rtol=1e-4, atol=1e-4)
    rows = {w: run(teacher, train, test, "300", "mid_block", "clean", random_teacher=False, progress=False, workers=w)
            for w in (1, 2)}
    assert [r["accuracy"] for r in rows[1]] == pytest.approx([r["accuracy"] for r in rows[2]], abs=0.021)


def test_command_checks_its_config(tiny_teacher_dir, tmp_path):
    cfg = {**command.DEFAULTS, "teacher": str(tiny_teacher_dir), "data": {**TINY_DATA}, "out": str(tmp_path)}
    with pytest.raises(UserError, match="data.resolution is 32 but the teacher expects 16"):
        command.run({**cfg, "data": {**TINY_DATA, "resolution": 32}})
    with pytest.raises(UserError, match="bad pool 'grid:0'"):
        command.run({**cfg, "pool": "grid:0"})
    with pytest.raises(UserError, match="batch_size must be a positive integer"):
        command.run({**cfg, "batch_size": 0})


def test_cli_wrong_tap_is_a_one_line_error(tiny_teacher_dir, tmp_path, capsys):
    code = cli.main(["probe", "--teacher", str(tiny_teacher_dir), "--taps", "mid_blok", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown tap 'mid_blok' (did you mean mid_block" in err


def test_cli_probe_writes_table_plots_report_and_metrics(tiny_teacher_dir, tmp_path):
    out = tmp_path / "probe"
    run_cli("probe", "--teacher", str(tiny_teacher_dir), "--data", "digits", "--data.resolution", "16",
            "--data.train_size", "200", "--data.test_size", "100", "--timesteps", "0,500",
            "--taps", "mid_block,up_blocks.0", "--out", str(out))
    rows = list(csv.DictReader((out / "probe.csv").open()))
    assert len(rows) == 1 + 2 * 2 * 2 * 2  # pixels + {trained, random} x {clean, noised} x 2 t x 2 taps
    assert {(r["teacher"], r["input"], r["t"], r["tap"]) for r in rows[1:]} == {
        (k, i, t, tap) for k in ("trained", "random") for i in ("clean", "noised") for t in ("0", "500")
        for tap in ("mid_block", "up_blocks.0")}
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    for name in ("heatmap_clean.png", "heatmap_noised.png", "vs_t.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("best_accuracy", "best_t", "best_tap", "best_input", "pixel_accuracy",
                "random_teacher_best_accuracy", "peak_rss_mb", "seconds"):
        assert key in metrics
    assert metrics["best_t"] in (0, 500) and metrics["best_tap"] in ("mid_block", "up_blocks.0")
    report = (out / "report.md").read_text()
    assert "![vs_t](vs_t.png)" in report and f"{metrics['best_accuracy']:.4f}" in report
    assert "resolution: 16" in (out / "config.yaml").read_text()


def test_cli_probe_with_two_pools_reports_each(tiny_teacher_dir, tmp_path):
    out = tmp_path / "probe"
    run_cli("probe", "--teacher", str(tiny_teacher_dir), "--data", "digits", "--data.resolution", "16",
            "--data.train_size", "100", "--data.test_size", "50", "--timesteps", "0", "--inputs", "clean",
            "--taps", "mid_block", "--pool", "gap,grid:2", "--out", str(out))
    rows = list(csv.DictReader((out / "probe.csv").open()))
    assert [(r["teacher"], r["pool"], r["dim"]) for r in rows] == [
        ("pixels", "", "256"), ("trained", "gap", "32"), ("trained", "grid:2", "128"),
        ("random", "gap", "32"), ("random", "grid:2", "128")]
    for name in ("heatmap_clean_gap.png", "heatmap_clean_grid2.png", "vs_t_gap.png", "vs_t_grid2.png"):
        assert (out / name).is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    by_rows = {r["pool"]: float(r["accuracy"]) for r in rows if r["teacher"] == "trained"}
    assert metrics["grid2_best_accuracy"] == pytest.approx(by_rows["grid:2"], abs=1e-5)
    assert metrics["gap_points_over_pixels"] == pytest.approx(100 * (by_rows["gap"] - float(rows[0]["accuracy"])),
                                                              abs=1e-3)
    assert metrics["best_pool"] in ("gap", "grid:2") and "| grid:2 | clean | 0 | mid_block |" in (
        out / "report.md").read_text()
