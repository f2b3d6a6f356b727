"""`diffrep pdae interpolate`: decode between pairs of test images (reference 4.3, its first row).

    diffrep pdae interpolate --model runs/pdae/model --out runs/pdae-interpolate

For a seeded pair (x_a, x_b) of test images: z = E(x), x_T = DDIM-encode(x) with its own z, then for each
alpha in 0..1: x_T(alpha) = slerp(x_T_a, x_T_b, alpha), z(alpha) = lerp(z_a, z_b, alpha), decoded with z(alpha).
The reference's second row (mixing G of both codes at every step, "trajectory interpolation") is not done.
interpolate.png has one row per pair: x_a, the decoded frames, x_b. Numbers: endpoint_mse (the alpha = 0 and 1
frames against x_a and x_b, on [0, 1]) and step_mse (mean MSE between neighbouring frames: how smooth the path is).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from diffrep import data as data_lib
from diffrep.dpm.sample import save_grid
from diffrep.errors import UserError
from diffrep.options import pdae as options
from diffrep.pdae import app, ddim
from diffrep.pdae.quality import to_unit
from diffrep.run_dir import write_metrics

DEFAULTS = options.INTERPOLATE


def slerp(a: torch.Tensor, b: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation per sample (flattened): theta = arccos(<a, b> / |a||b|); linear when theta ~ 0."""
    shape = (-1,) + (1,) * (a.dim() - 1)
    alpha = alpha.to(a)
    theta = F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1).clamp(-1, 1).acos()
    sin = theta.sin().clamp_min(1e-8)
    wa, wb = ((1 - alpha) * theta).sin() / sin, (alpha * theta).sin() / sin
    wa, wb = torch.where(theta < 1e-4, 1 - alpha, wa), torch.where(theta < 1e-4, alpha, wb)
    return wa.view(shape) * a + wb.view(shape) * b


def run(cfg: dict) -> dict:
    start = time.perf_counter()
    for key in ("pairs", "encode_steps", "decode_steps"):
        app.positive_int(cfg[key], key)
    if app.positive_int(cfg["frames"], "frames") < 2:
        raise UserError(f"frames must be at least 2, got {cfg['frames']}")
    cfg, loaded = app.load(cfg)
    test = data_lib.load(cfg["data"], "test")
    if len(test) < 2:
        raise UserError("interpolation needs at least 2 test images")
    out = app.prepare_out(cfg)
    model, teacher, device, progress = loaded.model, loaded.teacher, loaded.device, cfg["progress_bar"]
    gen = torch.Generator().manual_seed(cfg["seed"])
    pairs = torch.stack([torch.randperm(len(test), generator=gen)[:2] for _ in range(cfg["pairs"])])
    n, k = len(pairs), cfg["frames"]
    print(f"interpolating {n} pairs of {cfg['data']['name']} test images in {k} frames with {loaded.kind} "
          f"{loaded.directory} -> {out}")
    x0 = test.floats(pairs.flatten()).to(device)  # a0, b0, a1, b1, ...
    abar = teacher.alphas_cumprod
    with torch.no_grad():
        z = model.encoder(x0)
    x_T = ddim.encode(ddim.eps_function(model, teacher, z), abar, x0, cfg["encode_steps"], progress)
    alpha = torch.linspace(0, 1, k, device=device).repeat(n)       # frame-major within each pair
    first, second = (torch.arange(n, device=device) * 2).repeat_interleave(k), \
        (torch.arange(n, device=device) * 2 + 1).repeat_interleave(k)
    x_mix = slerp(x_T[first], x_T[second], alpha)
    z_mix = torch.lerp(z[first], z[second], alpha[:, None])
    frames = torch.cat([ddim.decode(ddim.eps_function(model, teacher, z_mix[part]), abar, x_mix[part],
                                    cfg["decode_steps"], progress)
                        for part in app.batches(len(alpha), cfg["batch_size"])]).cpu().view(n, k, *x0.shape[1:])
    ends = x0.cpu().view(n, 2, *x0.shape[1:])
    grid = save_grid(torch.cat([ends[:, :1], frames, ends[:, 1:]], 1).flatten(0, 1), out / "interpolate.png",
                     nrow=k + 2)
    endpoint = torch.cat([(to_unit(frames[:, 0]) - to_unit(ends[:, 0])).square().flatten(1).mean(1),
                          (to_unit(frames[:, -1]) - to_unit(ends[:, 1])).square().flatten(1).mean(1)]).mean()
    steps = (to_unit(frames[:, 1:]) - to_unit(frames[:, :-1])).square().flatten(2).mean(2).mean()
    metrics = {"endpoint_mse": float(endpoint), "step_mse": float(steps), "pairs": n, "frames": k,
               "seconds": time.perf_counter() - start}
    lines = [f"{n} pairs, {k} frames; x_T by {cfg['encode_steps']} DDIM inversion steps, decoded in "
             f"{cfg['decode_steps']}; slerp of x_T, lerp of z.", "",
             f"- endpoint_mse (alpha 0 and 1 against the two images): {metrics['endpoint_mse']:.4g}",
             f"- step_mse (neighbouring frames): {metrics['step_mse']:.4g}", "",
             f"Rows of {grid.name}: image a, the frames, image b."]
    report = app.write_report(out, "PDAE interpolation", loaded, cfg, lines, [grid])
    print("\n".join(lines[2:4]) + f"\nreport: {report}")
    return write_metrics(out, metrics)
