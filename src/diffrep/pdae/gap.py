"""`diffrep pdae gap`: how far the frozen DPM's posterior mean is from the true one, without and with the shift G.

    diffrep pdae gap --model runs/pdae/model --out runs/pdae-gap

The reference's diagnostic (section 1.6, sampler/gap_measure.py). For each t of a grid and each test image x0
(in [-1, 1]), with x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, eps ~ N(0, I), and z = E(x0):
    gap_dpm(t)  = MSE( mu~(x0, x_t), mu~(x0_hat(eps_theta), x_t) )
    gap_pdae(t) = MSE( mu~(x0, x_t), mu~(x0_hat(eps_theta + shift_coef_t G(x_t, z, t)), x_t) )
(the DDPM shift coefficient, as in training; x0_hat unclipped), averaged over images. The reference draws the
noise with torch.rand_like, i.e. uniform on [0, 1) rather than Gaussian; that is a bug (x_t is then not a
sample of q(x_t | x0)), so this uses randn. The noise of timestep t is seeded by (seed, t), the same for every
batch size. Writes gap.csv (per t), gap.png (both curves, log y), metrics.json (gap_mean_dpm, gap_mean_pdae and
gap_ratio = pdae / dpm, means over the t grid), report.md and config.yaml. PDAE models only: a Diff-AE has
no frozen DPM to compare with.
"""
from __future__ import annotations

import csv
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from diffrep import data as data_lib
from diffrep.errors import UserError
from diffrep.pdae import app
from diffrep.pdae.shift import eps_and_gradient, posterior_mean, predicted_x0, shift_coefficient
from diffrep.report.plots import curves_vs_t
from diffrep.train import write_metrics

DEFAULTS = {**app.APP_DEFAULTS,
            "data": {**app.DATA, "test_size": 200},
            "timesteps": 50,   # a count (evenly spaced over 0..T-1) or a list of timesteps; the reference: all T
            "out": "runs/pdae-gap"}


def timestep_grid(spec, num_timesteps: int) -> list[int]:
    """A count n -> n timesteps evenly spaced over 0..T-1; a list (or "0,10,50") -> those timesteps, sorted."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        app.positive_int(spec, "timesteps")
        return sorted({int(v) for v in np.linspace(0, num_timesteps - 1, min(spec, num_timesteps))})
    if isinstance(spec, str):
        try:
            spec = [int(v) for v in spec.split(",")]
        except ValueError:
            pass
    if not isinstance(spec, list) or not spec or not all(
            isinstance(t, int) and not isinstance(t, bool) and 0 <= t < num_timesteps for t in spec):
        raise UserError(f"timesteps must be a count or a list of integers in 0..{num_timesteps - 1}, got {spec!r}")
    return sorted(set(spec))


@torch.no_grad()
def posterior_gaps(teacher, estimator, x0: torch.Tensor, z: torch.Tensor, ts: list[int], seed: int,
                   batch_size: int, progress: bool = False) -> tuple[list[float], list[float]]:
    """(gap_dpm(t), gap_pdae(t)) for t in ts: per-element MSE of the posterior means, averaged over images."""
    abar, device = teacher.alphas_cumprod, teacher.device
    coef = shift_coefficient(abar, "ddpm")
    dpm, pdae = [], []
    for t in tqdm(ts, desc="gap", disable=None if progress else True, leave=False, unit="t"):
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + t))
        sums = torch.zeros(2, dtype=torch.float64)
        for part in app.batches(len(x0), batch_size):
            x = x0[part].to(device)
            tt = torch.full((len(x),), t, dtype=torch.long, device=device)
            x_t = teacher.noised(x, tt, noise[part].to(device))
            eps, gradient = eps_and_gradient(teacher, estimator, x_t, tt, z[part].to(device))
            true = posterior_mean(abar, x_t, tt, x)
            for i, e in enumerate((eps, eps + coef[t].item() * gradient)):
                mean = posterior_mean(abar, x_t, tt, predicted_x0(abar, x_t, tt, e))
                sums[i] += (true - mean).double().square().flatten(1).mean(1).sum().cpu()
        dpm.append(float(sums[0]) / len(x0))
        pdae.append(float(sums[1]) / len(x0))
    return dpm, pdae


def run(cfg: dict) -> dict:
    start = time.perf_counter()
    cfg, loaded = app.load(cfg)
    if loaded.kind != "pdae":
        raise UserError(f"gap needs a PDAE model (a frozen DPM shifted by G); {loaded.directory} is a {loaded.kind}")
    cfg["timesteps"] = timestep_grid(cfg["timesteps"], loaded.teacher.num_timesteps)
    test = data_lib.load(cfg["data"], "test")
    out = app.prepare_out(cfg)
    ts = cfg["timesteps"]
    print(f"posterior-mean gap of {loaded.directory} at {len(ts)} timesteps on {len(test)} "
          f"{cfg['data']['name']} test images -> {out}")
    x0 = test.floats()
    z = app.encode_z(loaded.model.encoder, x0, cfg["batch_size"], loaded.device)
    dpm, pdae = posterior_gaps(loaded.teacher, loaded.model.estimator, x0, z, ts, cfg["seed"], cfg["batch_size"],
                               cfg["progress_bar"])
    with (out / "gap.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["t", "gap_dpm", "gap_pdae", "ratio"])
        writer.writerows([t, f"{a:.6g}", f"{b:.6g}", f"{b / a:.6g}" if a else ""] for t, a, b in zip(ts, dpm, pdae))
    plot = curves_vs_t([("posterior-mean MSE", {"pre-trained DPM": (ts, dpm), "PDAE (with G)": (ts, pdae)})],
                       out / "gap.png", "posterior-mean gap", logy=True)
    metrics = {"gap_mean_dpm": sum(dpm) / len(dpm), "gap_mean_pdae": sum(pdae) / len(pdae)}
    metrics |= {"gap_ratio": metrics["gap_mean_pdae"] / metrics["gap_mean_dpm"], "test_size": len(test),
                "timesteps": len(ts), "seconds": time.perf_counter() - start}
    lines = [f"{len(test)} test images, {len(ts)} timesteps from {ts[0]} to {ts[-1]}; per t in gap.csv.", "",
             f"- mean gap, pre-trained DPM: {metrics['gap_mean_dpm']:.4g}",
             f"- mean gap, PDAE (with G): {metrics['gap_mean_pdae']:.4g}",
             f"- ratio PDAE / DPM: {metrics['gap_ratio']:.3f}"]
    report = app.write_report(out, "PDAE posterior-mean gap", loaded, cfg, lines, [plot])
    print("\n".join(lines[2:]) + f"\nreport: {report}")
    return write_metrics(out, metrics)
