"""`diffrep pdae gap`: how far the frozen DPM's posterior mean is from the true one, without and with the shift G.

    diffrep pdae gap --model runs/pdae/model --out runs/pdae-gap

The reference's diagnostic (section 1.6, sampler/gap_measure.py). For each t of a grid and each test image x0
(in [-1, 1]), with x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, eps ~ N(0, I), and z = E(x0):
    gap_dpm(t)  = MSE( mu~(x0, x_t), mu~(x0_hat(eps_theta), x_t) )
    gap_pdae(t) = MSE( mu~(x0, x_t), mu~(x0_hat(eps_theta + shift_coef_t G(x_t, z, t)), x_t) )
(the DDPM shift coefficient, as in training; x0_hat unclipped), averaged over images. As mu~ is linear in x0, each
gap is c_t^2 MSE(x0, x0_hat) with c_t = beta_t sqrt(abar_{t-1}) / (1 - abar_t), which falls from 1 at t = 0 to
about 1e-2 at t = 160: the mean over t is dominated by small t, where x_t already pins x0 down better than z can and
the shift coefficient goes to 0 (it is 0 at t = 0). So the x0_hat MSEs are written too (the reference's one-step
denoising diagnostic), and `halved` gives the timesteps where G at least halves the gap. The reference draws the
noise with torch.rand_like, i.e. uniform on [0, 1) rather than Gaussian; that is a bug (x_t is then not a
sample of q(x_t | x0)), so this uses randn. The noise of timestep t is seeded by (seed, t), the same for every
batch size. Writes gap.csv (per t: both gaps, their ratio, both x0_hat MSEs), gap.png (the gaps and the x0_hat
MSEs, log y), metrics.json (gap_mean_dpm, gap_mean_pdae, gap_ratio = pdae / dpm of the means over the t grid,
halved_min_t / halved_max_t: the first and last t of the grid with a ratio <= 0.5, or -1), report.md and
config.yaml. PDAE models only: a Diff-AE has no frozen DPM to compare with.
"""
from __future__ import annotations

import csv
import time

import numpy as np
import torch

from diffrep import console
from diffrep import data as data_lib
from diffrep.errors import UserError
from diffrep.options import pdae as options
from diffrep.pdae import app
from diffrep.pdae.shift import eps_and_gradient, posterior_mean, predicted_x0, shift_coefficient
from diffrep.report.plots import curves_vs_t
from diffrep.run_dir import write_metrics

DEFAULTS = options.GAP


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


def _summed_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image MSE, summed over the batch."""
    return (a - b).double().square().flatten(1).mean(1).sum().cpu()


@torch.no_grad()
def posterior_gaps(teacher, estimator, x0: torch.Tensor, z: torch.Tensor, ts: list[int], seed: int,
                   batch_size: int, progress: bool = False) -> dict[str, list[float]]:
    """Per t in ts, averaged over images: gap_dpm and gap_pdae (per-element MSE of the posterior means) and
    x0_dpm and x0_pdae (per-element MSE of x0_hat against x0)."""
    abar, device = teacher.alphas_cumprod, teacher.device
    coef = shift_coefficient(abar, "ddpm")
    out = {key: [] for key in ("gap_dpm", "gap_pdae", "x0_dpm", "x0_pdae")}
    for t in console.bar(ts, progress, desc="gap", leave=False, unit="t"):
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + t))
        sums = torch.zeros(4, dtype=torch.float64)
        for part in app.batches(len(x0), batch_size):
            x = x0[part].to(device)
            tt = torch.full((len(x),), t, dtype=torch.long, device=device)
            x_t = teacher.noised(x, tt, noise[part].to(device))
            eps, gradient = eps_and_gradient(teacher, estimator, x_t, tt, z[part].to(device))
            true = posterior_mean(abar, x_t, tt, x)
            for i, e in enumerate((eps, eps + coef[t].item() * gradient)):
                x0_hat = predicted_x0(abar, x_t, tt, e)
                sums[i] += _summed_mse(true, posterior_mean(abar, x_t, tt, x0_hat))
                sums[2 + i] += _summed_mse(x, x0_hat)
        for key, total in zip(out, sums.tolist()):
            out[key].append(total / len(x0))
    return out


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
    g = posterior_gaps(loaded.teacher, loaded.model.estimator, x0, z, ts, cfg["seed"], cfg["batch_size"],
                       cfg["progress_bar"])
    dpm, pdae = g["gap_dpm"], g["gap_pdae"]
    ratios = [b / a if a else float("nan") for a, b in zip(dpm, pdae)]
    with (out / "gap.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["t", "gap_dpm", "gap_pdae", "ratio", "x0_mse_dpm", "x0_mse_pdae"])
        writer.writerows([t, *(f"{v:.6g}" for v in row)]
                         for t, row in zip(ts, zip(dpm, pdae, ratios, g["x0_dpm"], g["x0_pdae"])))
    curves = ("pre-trained DPM", "gap_dpm", "x0_dpm"), ("PDAE (with G)", "gap_pdae", "x0_pdae")
    plot = curves_vs_t([("posterior-mean MSE (the gap)", {name: (ts, g[gap]) for name, gap, _ in curves}),
                        ("x0_hat MSE", {name: (ts, g[x0]) for name, _, x0 in curves})],
                       out / "gap.png", "posterior-mean gap", logy=True)
    halved = [t for t, r in zip(ts, ratios) if r <= 0.5]
    metrics = {"gap_mean_dpm": sum(dpm) / len(dpm), "gap_mean_pdae": sum(pdae) / len(pdae)}
    metrics |= {"gap_ratio": metrics["gap_mean_pdae"] / metrics["gap_mean_dpm"],
                "halved_min_t": halved[0] if halved else -1, "halved_max_t": halved[-1] if halved else -1,
                "test_size": len(test), "timesteps": len(ts), "seconds": time.perf_counter() - start}
    lines = [f"{len(test)} test images, {len(ts)} timesteps from {ts[0]} to {ts[-1]}; per t in gap.csv.", "",
             f"- mean gap, pre-trained DPM: {metrics['gap_mean_dpm']:.4g}",
             f"- mean gap, PDAE (with G): {metrics['gap_mean_pdae']:.4g}",
             f"- ratio PDAE / DPM: {metrics['gap_ratio']:.3f}",
             f"- G at least halves the gap at t = {halved[0]}..{halved[-1]} ({len(halved)} of {len(ts)} timesteps)"
             if halved else "- G halves the gap at no timestep of the grid"]
    report = app.write_report(out, "PDAE posterior-mean gap", loaded, cfg, lines, [plot])
    print("\n".join(lines[2:]) + f"\nreport: {report}")
    return write_metrics(out, metrics)
