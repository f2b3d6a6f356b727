"""`diffrep pdae reconstruct`: autoencode test images through z (reference 4.2) and score them (reference 4.8).

    diffrep pdae reconstruct --model runs/pdae/model --out runs/pdae-reconstruct

For every test image x0, with z = E(x0):
  - inferred x_T: DDIM-encode x0 to x_T with z (`encode_steps`; null: as many steps as each decode), then
    DDIM-decode x_T with z in each of `decode_steps` steps;
  - random x_T: decode a seeded x_T ~ N(0, I) with z (`random_steps`): what z alone carries;
  - unconditional: the teacher's own DDIM sample from the same x_T, compared with the same images (the floor
    that random_xT must beat: random_xT_over_unconditional is their MSE ratio).
SSIM, PSNR and MSE per image on [0, 1], then averaged. A Diff-AE model works the same (eps from its UNet).
Writes reconstruct.png (rows: originals, inferred x_T per decode steps, random x_T with z, unconditional),
metrics.json, report.md and config.yaml.
"""
from __future__ import annotations

import time
from collections import defaultdict

import torch

from diffrep import data as data_lib
from diffrep.dpm.sample import save_grid
from diffrep.errors import UserError
from diffrep.options import pdae as options
from diffrep.pdae import app, ddim
from diffrep.pdae.quality import image_metrics
from diffrep.run_dir import write_metrics

DEFAULTS = options.RECONSTRUCT


def _check(cfg: dict) -> dict:
    app.positive_int(cfg["random_steps"], "random_steps")
    app.positive_int(cfg["grid_images"], "grid_images")
    if cfg["encode_steps"] is not None:
        app.positive_int(cfg["encode_steps"], "encode_steps")
    return {**cfg, "decode_steps": app.positive_ints(cfg["decode_steps"], "decode_steps")}


def run(cfg: dict) -> dict:
    start = time.perf_counter()
    cfg, loaded = app.load(_check(cfg))
    test = data_lib.load(cfg["data"], "test")
    if len(test) == 0:
        raise UserError("no test images")
    out = app.prepare_out(cfg)
    model, teacher, device, progress = loaded.model, loaded.teacher, loaded.device, cfg["progress_bar"]
    abar = teacher.alphas_cumprod
    x_T = torch.randn(test.images.shape, generator=torch.Generator().manual_seed(cfg["seed"]))
    print(f"reconstructing {len(test)} {cfg['data']['name']} test images with {loaded.kind} {loaded.directory}: "
          f"encode {cfg['encode_steps'] or 'as decode'}, decode {cfg['decode_steps']}, random x_T "
          f"{cfg['random_steps']} steps -> {out}")
    scores, rows = defaultdict(list), defaultdict(list)  # per-image values; grid rows
    n_grid = min(cfg["grid_images"], len(test))
    for part in app.batches(len(test), cfg["batch_size"]):
        x0 = test.floats(part).to(device)
        with torch.no_grad():
            eps_z = ddim.eps_function(model, teacher, model.encoder(x0))
        decoded, inverted = {}, {}  # grid row name -> (images, metric key with {} for ssim / psnr / mse)
        for k in cfg["decode_steps"]:
            e = cfg["encode_steps"] or k
            if e not in inverted:
                inverted[e] = ddim.encode(eps_z, abar, x0, e, progress)
            decoded[f"inferred_{k}"] = ddim.decode(eps_z, abar, inverted[e], k, progress), f"inferred_{{}}_{k}"
        noise = x_T[part].to(device)
        decoded["random_xT"] = ddim.decode(eps_z, abar, noise, cfg["random_steps"], progress), "random_xT_{}"
        decoded["unconditional"] = (ddim.decode(ddim.eps_function(None, teacher), abar, noise, cfg["random_steps"],
                                                progress), "unconditional_{}")
        take = max(0, n_grid - part.start)
        rows["original"].append(x0[:take].cpu())
        for name, (images, key) in decoded.items():
            rows[name].append(images[:take].cpu())
            for metric, values in image_metrics(images, x0).items():
                scores[key.format(metric)].append(values.cpu())
    metrics = {key: float(torch.cat(values).mean()) for key, values in scores.items()}
    metrics["random_xT_over_unconditional"] = metrics["random_xT_mse"] / metrics["unconditional_mse"]
    grid = save_grid(torch.cat([torch.cat(images) for images in rows.values()]), out / "reconstruct.png",
                     nrow=n_grid)
    metrics |= {"test_size": len(test), "encode_steps": cfg["encode_steps"] or 0,
                "random_steps": cfg["random_steps"], "seconds": time.perf_counter() - start}
    lines = [f"{len(test)} test images; DDIM inversion in {cfg['encode_steps'] or 'as many steps as the decode'} "
             f"steps, x_T from N(0, I) decoded in {cfg['random_steps']} steps. Metrics on [0, 1], per image, averaged.",
             "", "| x_T | decode steps | SSIM | PSNR | MSE |", "|---|---|---|---|---|"]
    for k in cfg["decode_steps"]:
        lines.append(f"| inferred | {k} | {metrics[f'inferred_ssim_{k}']:.4f} | {metrics[f'inferred_psnr_{k}']:.2f} "
                     f"| {metrics[f'inferred_mse_{k}']:.3g} |")
    for name, label in (("random_xT", "random, with z"), ("unconditional", "random, teacher alone")):
        lines.append(f"| {label} | {cfg['random_steps']} | {metrics[f'{name}_ssim']:.4f} | "
                     f"{metrics[f'{name}_psnr']:.2f} | {metrics[f'{name}_mse']:.3g} |")
    lines += ["", f"random_xT_over_unconditional (MSE ratio): {metrics['random_xT_over_unconditional']:.3f}", "",
              f"Rows of {grid.name}: {', '.join(rows)}."]
    report = app.write_report(out, "PDAE reconstruction", loaded, cfg, lines, [grid])
    print("\n".join(lines[2:-2]))
    print(f"report: {report}")
    return write_metrics(out, metrics)
