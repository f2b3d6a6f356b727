"""Wall time of a probe grid: diffrep against the naive approach, with equal accuracies as the check.

The grid: the shipped teacher's 5 default taps x 4 timesteps x 2 inputs (clean, noised) x 2 poolings (gap, grid:2)
= 80 probes, on stratified subsets of 5k train / 1k test Fashion-MNIST images; no random teacher.

- diffrep: `diffrep.probe.run` (one early-exit pass per (input, t) for all taps and poolings, pooled on the fly,
  preconditioned L-BFGS probes, worker threads; its defaults otherwise).
- naive: for every (input, t, tap) a full UNet pass over both splits with a forward hook on the tap, the maps kept
  in memory and pooled, then one scikit-learn LogisticRegression per probe on standardised features (default
  settings but max_iter=5000 so that it converges; torch's and scikit-learn's default threads). With 5k train
  images both minimise the same objective: scikit-learn's C = 1 is 1 / (2 * weight_decay * N) for diffrep's
  weight_decay 1e-4. Noised inputs use diffrep's noise (per batch, same batch size), so both see the same x_t.

The two arms run one after the other in one process; the ratio of their wall times is the speed-up, and the
largest accuracy difference over the 80 probes the check (1k test images: 0.1 point per image).

    python benchmarks/probe_grid.py [--train_size 5000] [--test_size 1000] [--timesteps 0,50,250,750] \
        [--teacher PATH] [--data fashion-mnist] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from timing import machine, save_result  # benchmarks/timing.py

from diffrep import data as data_lib
from diffrep.probe import default_taps
from diffrep.probe import run as diffrep_run
from diffrep.probe.features import noise_generator
from diffrep.teacher import load_teacher

HERE = Path(__file__).resolve().parent
POOLS = {"gap": 1, "grid:2": 2}


@torch.no_grad()
def full_pass_maps(teacher, images, t: int, tap: str, mode: str, split: str, batch_size: int) -> torch.Tensor:
    """(N, C, H, W): the tap's output of full UNet passes, caught by a forward hook, kept in memory."""
    module = dict(teacher.unet.named_modules())[tap]
    caught = []
    handle = module.register_forward_hook(lambda m, args, out: caught.append(out[0] if isinstance(out, tuple)
                                                                            else out))
    try:
        for b, start in enumerate(range(0, len(images), batch_size)):
            x = images.floats(slice(start, start + batch_size))
            steps = torch.full((len(x),), t, dtype=torch.long)
            if mode == "noised":
                noise = torch.randn(x.shape, generator=noise_generator(0, split, b, 0))
                abar = teacher.alphas_cumprod[t]
                x = abar.sqrt() * x + (1 - abar).sqrt() * noise
            teacher.unet(x, steps)
    finally:
        handle.remove()
    return torch.cat(caught)


def sklearn_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    scaler = StandardScaler().fit(train_x)
    model = LogisticRegression(max_iter=5000).fit(scaler.transform(train_x), train_y)
    return float(model.score(scaler.transform(test_x), test_y))


def naive(teacher, train, test, timesteps, taps, inputs, batch_size: int) -> dict:
    scores = {}
    for mode in inputs:
        for t in timesteps:
            for tap in taps:
                maps = {split: full_pass_maps(teacher, data, t, tap, mode, split, batch_size)
                        for split, data in (("train", train), ("test", test))}
                for pool, grid in POOLS.items():
                    pooled = {split: F.adaptive_avg_pool2d(m, min(grid, m.shape[-1])).flatten(1).numpy()
                              for split, m in maps.items()}
                    scores[mode, t, tap, pool] = sklearn_probe(pooled["train"], train.labels.numpy(),
                                                               pooled["test"], test.labels.numpy())
                print(f"naive {mode} t={t} {tap}: " + ", ".join(f"{pool} {scores[mode, t, tap, pool]:.4f}"
                                                                for pool in POOLS), flush=True)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--note", default="", help="saved in the JSON: how loaded the machine was, say")
    parser.add_argument("--train_size", type=int, default=5000)
    parser.add_argument("--test_size", type=int, default=1000)
    parser.add_argument("--timesteps", default="0,50,250,750")
    parser.add_argument("--teacher", default=None, help="default: the shipped teacher")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    teacher = load_teacher(args.teacher)
    cfg = teacher.data_config({**data_lib.DATA_DEFAULTS, "name": args.data, "resolution": None, "channels": None,
                               "train_size": args.train_size,
                               "test_size": args.test_size})
    train, test = data_lib.load(cfg, "train"), data_lib.load(cfg, "test")
    timesteps, taps, inputs = [int(t) for t in args.timesteps.split(",")], default_taps(teacher), ["clean", "noised"]
    print(f"{len(taps)} taps x {len(timesteps)} t x {len(inputs)} inputs x {len(POOLS)} pools on "
          f"{len(train)} / {len(test)} {args.data} images", flush=True)

    start, timings = time.perf_counter(), {}
    rows = diffrep_run(teacher, train, test, timesteps, taps, inputs, ",".join(POOLS), batch_size=args.batch_size,
                       random_teacher=False, progress=False, timings=timings)
    diffrep_seconds = time.perf_counter() - start
    ours = {(r["input"], r["t"], r["tap"], r["pool"]): r["accuracy"] for r in rows if r["teacher"] == "trained"}
    print(f"diffrep: {diffrep_seconds:.0f} s (teacher passes {timings['features_seconds']:.0f} s, probes "
          f"{timings['probes_seconds']:.0f} s)", flush=True)

    start = time.perf_counter()
    theirs = naive(teacher, train, test, timesteps, taps, inputs, args.batch_size)
    naive_seconds = time.perf_counter() - start
    differences = {key: 100 * (ours[key] - theirs[key]) for key in theirs}
    worst = max(differences, key=lambda key: abs(differences[key]))
    result = {
        "benchmark": "probe_grid", **machine(),
        "note": args.note,
        "teacher": str(teacher.path), "data": args.data, "train_size": len(train), "test_size": len(test),
        "timesteps": timesteps, "taps": taps, "inputs": inputs, "pools": list(POOLS), "probes": len(theirs),
        "diffrep_seconds": round(diffrep_seconds, 1),
        "diffrep_features_seconds": round(timings["features_seconds"], 1),
        "diffrep_probes_seconds": round(timings["probes_seconds"], 1),
        "naive_seconds": round(naive_seconds, 1), "ratio": round(naive_seconds / diffrep_seconds, 2),
        "max_abs_accuracy_difference_points": round(abs(differences[worst]), 2),
        "mean_abs_accuracy_difference_points": round(float(np.mean(np.abs(list(differences.values())))), 3),
        "worst_probe": {"input": worst[0], "t": worst[1], "tap": worst[2], "pool": worst[3],
                        "diffrep": ours[worst], "naive": theirs[worst]},
        "within_half_a_point": all(abs(d) <= 0.5 + 1e-9 for d in differences.values()),
        "accuracies": [{"input": k[0], "t": k[1], "tap": k[2], "pool": k[3], "diffrep": ours[k], "naive": theirs[k]}
                       for k in theirs],
    }
    print(f"naive: {naive_seconds:.0f} s; ratio {result['ratio']}x; max |accuracy difference| "
          f"{result['max_abs_accuracy_difference_points']} points", flush=True)
    save_result(result, args.out, "probe_grid")


if __name__ == "__main__":
    main()
