"""`diffrep probe`: linear-probe a teacher's features over timesteps, taps and input modes.

Writes probe.csv, heatmap_<input>.png, vs_t.png, report.md, metrics.json and config.yaml to --out.
The protocol and the effective-rank definitions are in the docstring of diffrep.probe.
"""
from __future__ import annotations

import csv
import resource
import time
from pathlib import Path

from diffrep import config as config_lib
from diffrep import data as data_lib
from diffrep.errors import UserError
from diffrep.options import probe as options
from diffrep.probe import stored
from diffrep.probe.features import parse_pools
from diffrep.probe.sweep import COLUMNS, best, parse_inputs, parse_taps, parse_timesteps, probe_passes
from diffrep.probe.sweep import run as sweep
from diffrep.probe.workers import Workers, default_workers
from diffrep.report.plots import curves_vs_t, heatmap
from diffrep.run_dir import write_metrics
from diffrep.teacher import Teacher, teacher_from_config

DEFAULTS = options.PROBE_COMMAND


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return value


def resolve(cfg: dict, teacher: Teacher) -> dict:
    """The config with the teacher's resolution/channels, timesteps, taps and inputs filled in and checked."""
    cfg = {**cfg, "data": {**cfg["data"]}, "probe": {**cfg["probe"]}}
    cfg["data"] = teacher.data_config(cfg["data"])
    cfg["timesteps"] = parse_timesteps(cfg["timesteps"], teacher.num_timesteps)
    cfg["taps"] = parse_taps(teacher, cfg["taps"])
    cfg["inputs"] = parse_inputs(cfg["inputs"])
    cfg["pool"] = parse_pools(cfg["pool"])
    return _check_numbers(cfg)


def _check_numbers(cfg: dict) -> dict:
    for name, value in (("noise_draws", cfg["noise_draws"]), ("batch_size", cfg["batch_size"]),
                        ("probe.max_iter", cfg["probe"]["max_iter"])):
        _positive_int(value, name)
    if not isinstance(cfg["probe"]["weight_decay"], (int, float)) or cfg["probe"]["weight_decay"] < 0:
        raise UserError(f"probe.weight_decay must be a number >= 0, got {cfg['probe']['weight_decay']!r}")
    return cfg


def write_csv(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row[k] is None else f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])
                             for k in COLUMNS})
    return path


def plot(rows: list[dict], cfg: dict, out: Path) -> list[Path]:
    """Per pooling: a t x tap accuracy heatmap per input mode and accuracy / effective rank against t.

    File names carry the pooling only when there are several (heatmap_clean.png or heatmap_clean_grid2.png).
    """
    trained = {(r["input"], r["t"], r["tap"], r["pool"]): r for r in rows if r["teacher"] == "trained"}
    ts, taps, paths = cfg["timesteps"], cfg["taps"], []
    for pool in cfg["pool"]:
        suffix = "_" + pool.replace(":", "") if len(cfg["pool"]) > 1 else ""
        paths += [heatmap([[trained[mode, t, tap, pool]["accuracy"] for tap in taps] for t in ts], ts, taps,
                          out / f"heatmap_{mode}{suffix}.png", title=f"linear-probe accuracy, {mode} input, {pool}",
                          xlabel="tap", ylabel="timestep t", colorbar="test accuracy")
                  for mode in cfg["inputs"]]
        panels = [(ylabel, {f"{tap} | {mode}": (ts, [trained[mode, t, tap, pool][key] for t in ts])
                            for mode in cfg["inputs"] for tap in taps})
                  for ylabel, key in (("test accuracy", "accuracy"), ("effective rank exp(H)", "erank_entropy"))]
        hlines = [(0, best(rows, "pixels")["accuracy"], "raw pixels", "--")]
        if cfg["random_teacher"]:
            hlines.append((0, best(rows, "random", pool)["accuracy"], "random teacher (best)", ":"))
        paths.append(curves_vs_t(panels, out / f"vs_t{suffix}.png",
                                 f"trained teacher, {pool} (colour: tap, line style: input)", hlines))
    return paths


def _describe(row: dict) -> str:
    return (f"{row['accuracy']:.4f} ({row['input']} input, t = {row['t']}, tap {row['tap']}, {row['pool']}, "
            f"{row['dim']} dims)")


def by_pool(rows: list[dict], pools: list[str]) -> dict[str, dict]:
    """Per pooling: the trained teacher's best probe, the random teacher's best, and the margins over both
    baselines in accuracy points (the probe issue's bar: >= 5 over raw pixels, >= 4 over the random teacher)."""
    pixels, summary = best(rows, "pixels")["accuracy"], {}
    for pool in pools:
        top, random = best(rows, "trained", pool), best(rows, "random", pool)
        summary[pool] = {"best_accuracy": top["accuracy"], "best_t": top["t"], "best_tap": top["tap"],
                         "best_input": top["input"], "points_over_pixels": 100 * (top["accuracy"] - pixels)}
        if random:
            summary[pool] |= {"random_teacher_best_accuracy": random["accuracy"],
                              "points_over_random_teacher": 100 * (top["accuracy"] - random["accuracy"])}
    return summary


def write_report(rows: list[dict], cfg: dict, teacher: str, sizes: tuple[int, int], plots: list[Path],
                 out: Path) -> Path:
    top, pixels = best(rows), best(rows, "pixels")
    lines = [
        "# Linear probe of a diffusion model's features", "",
        f"- teacher: `{teacher}`" + (f" (stored features: `{cfg['features']}`)" if cfg.get("features") else "")
        + f"; data: {cfg['data']['name']}, {sizes[0]} train / {sizes[1]} test images",
        f"- pool: {', '.join(cfg['pool'])}; inputs: {', '.join(cfg['inputs'])}; noise draws: {cfg['noise_draws']}; "
        f"weight decay {cfg['probe']['weight_decay']:g}, {cfg['probe']['max_iter']} L-BFGS iterations",
        f"- timesteps: {', '.join(map(str, cfg['timesteps']))}; taps: {', '.join(cfg['taps'])}", "",
        f"**Best**: {_describe(top)}; effective rank {top['erank_entropy']:.1f} "
        f"(count above 1e-3: {top['erank_count']}).", "",
        f"Baselines: raw pixels {pixels['accuracy']:.4f} ({pixels['dim']} dims, not pooled)"
        + ("." if cfg["random_teacher"] else "; random teacher not run."), "",
        "| pool | input | best t | best tap | trained | random teacher (best) | points over pixels | over random |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pool in cfg["pool"]:
        for mode in cfg["inputs"]:
            row = best([r for r in rows if r["input"] in (mode, "")], "trained", pool)
            random = best([r for r in rows if r["input"] in (mode, "")], "random", pool)
            over_pixels = f"{100 * (row['accuracy'] - pixels['accuracy']):+.1f}"
            versus_random = f"- | {over_pixels} | -"
            if random:
                versus_random = (f"{random['accuracy']:.4f} | {over_pixels} | "
                                 f"{100 * (row['accuracy'] - random['accuracy']):+.1f}")
            lines.append(f"| {pool} | {mode} | {row['t']} | {row['tap']} | {row['accuracy']:.4f} | {versus_random} |")
    lines += [""] + [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "Every probe is in `probe.csv`; the protocol and the effective-rank definitions are in the "
              "docstring of `diffrep.probe`."]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def run(cfg: dict) -> dict:
    start = time.perf_counter()
    if cfg.get("features"):
        store = stored.open_store(cfg["features"])
        cfg = stored.resolve(cfg, DEFAULTS, store)
        teacher_name = store.manifest["teacher"] or "(in memory)"
        _check_numbers(cfg)
    else:
        store = None
        teacher = teacher_from_config(cfg["teacher"])
        cfg = resolve(cfg, teacher)
        teacher_name = str(teacher.path)
    train = data_lib.load(cfg["data"], "train")
    test = data_lib.load(cfg["data"], "test")
    rows_kept = None
    if store is not None:
        for data, split in ((train, "train"), (test, "test")):
            stored.check_split(store, data, split)
        rows_kept = stored.train_rows(store, train, cfg["data"]["labels"])
        train = train if rows_kept is None else train.subset(rows_kept)
    elif cfg["data"]["labels"] not in (None, 1, 1.0):
        train = data_lib.labelled(train, cfg["data"]["labels"], cfg["data"]["seed"])
    for data, split in ((train, "train"), (test, "test")):
        data_lib.check_classes(data, split)
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(config_lib.dump(cfg))
    source = f"the feature store {cfg['features']}" if store is not None else teacher_name
    print(f"probing {len(cfg['taps'])} taps x {len(cfg['timesteps'])} timesteps x {len(cfg['inputs'])} inputs "
          f"of {source} on {len(train)} train / {len(test)} test {cfg['data']['name']} images -> {out}")
    timings: dict = {}
    if store is None:
        rows = sweep(teacher, train, test, cfg["timesteps"], cfg["taps"], cfg["inputs"], cfg["pool"],
                     cfg["noise_draws"], cfg["batch_size"], cfg["random_teacher"], cfg["probe"]["weight_decay"],
                     cfg["probe"]["max_iter"], cfg["seed"], cfg["progress_bar"], timings=timings)
    else:
        kinds = ["trained"] + (["random"] if cfg["random_teacher"] else [])
        passes = [(kind, mode, t) for kind in kinds for mode in cfg["inputs"] for t in cfg["timesteps"]]
        with Workers(default_workers()) as workers:
            rows = probe_passes(passes, stored.reader(store, cfg["taps"], cfg["pool"], rows_kept), cfg["taps"],
                                cfg["pool"], train, test, cfg["probe"]["weight_decay"], cfg["probe"]["max_iter"],
                                cfg["progress_bar"], timings, workers)
    write_csv(rows, out / "probe.csv")
    report = write_report(rows, cfg, teacher_name, (len(train), len(test)), plot(rows, cfg, out), out)
    top = best(rows)
    metrics = {"best_accuracy": top["accuracy"], "best_t": top["t"], "best_tap": top["tap"],
               "best_input": top["input"], "best_pool": top["pool"], "best_erank_entropy": top["erank_entropy"],
               "pixel_accuracy": best(rows, "pixels")["accuracy"], "probes": len(rows),
               "train_size": len(train), "test_size": len(test)}
    if cfg["random_teacher"]:
        metrics["random_teacher_best_accuracy"] = best(rows, "random")["accuracy"]
    for pool, summary in by_pool(rows, cfg["pool"]).items():  # flat keys such as grid2_points_over_pixels
        metrics |= {f"{pool.replace(':', '')}_{key}": value for key, value in summary.items()}
    metrics["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    metrics["seconds"] = time.perf_counter() - start
    metrics |= {key: timings[key] for key in ("features_seconds", "probes_seconds")}
    what = "reading features" if store is not None else "teacher passes"
    print(f"best: {_describe(top)}; raw pixels {metrics['pixel_accuracy']:.4f}; {len(rows)} probes in "
          f"{_minutes(metrics['seconds'])} ({what} {_minutes(timings['features_seconds'])}, probes "
          f"{_minutes(timings['probes_seconds'])}); report in {report}")
    return write_metrics(out, metrics)
