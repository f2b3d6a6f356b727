"""A model card (README.md) written beside every trained DPM: what it is, how well it trained, how to retrain it."""
from __future__ import annotations

import csv
import shlex
import shutil
import sys
from pathlib import Path

from diffrep import config as config_lib


def command_line(cfg: dict) -> str:
    """The command that reproduces this run: the one that started it, without --resume."""
    if Path(sys.argv[0]).name in ("diffrep", "cli.py", "__main__.py") and "fit" in sys.argv:
        return "diffrep " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "--resume")
    return f"diffrep dpm fit --config config.yaml  # the resolved config below, saved as {cfg['out']}/config.yaml"


def recipe(cfg: dict) -> str:
    """The optimisation in one line: rate and its schedule, loss weighting, warm start."""
    o, loss = cfg["optim"], cfg.get("loss", {"weighting": "none"})
    decay = "constant" if o.get("schedule", "constant") == "constant" else \
        f"{o['schedule']} decay to {o.get('final_lr_ratio', 0.0):g} x lr"
    weighting = f"Min-SNR-{loss['snr_gamma']:g}" if loss["weighting"] == "min_snr" else "unweighted"
    start = f"warm start from `{cfg['init']}`" if cfg.get("init") else "from scratch"
    return f"Adam lr {o['lr']:g}, {o['warmup_steps']} warm-up steps then {decay}; {weighting} epsilon MSE; {start}"


def loss_curve(csv_path: Path, path: Path, window: int = 100) -> Path | None:
    """train/loss against steps (a running mean over `window` logged values) from the run's metrics.csv."""
    if not csv_path.is_file():
        return None
    with csv_path.open(newline="") as file:
        points = sorted({int(row["step"]): float(row["train/loss"]) for row in csv.DictReader(file)
                         if row.get("train/loss")}.items())
    if len(points) < 2:
        return None
    from diffrep.report.plots import curves  # matplotlib, only when there is something to draw

    steps, values = zip(*points)
    smooth = [sum(values[max(0, i - window + 1):i + 1]) / (i + 1 - max(0, i - window + 1)) for i in range(len(values))]
    return curves({f"train loss (running mean of {window})": (list(steps), smooth)}, path, "training step",
                  "epsilon MSE")


def write_card(model_dir: Path, cfg: dict, metrics: dict, samples: Path, command: str,
               loss_png: Path | None = None, eval_png: Path | None = None) -> Path:
    shutil.copyfile(samples, model_dir / "samples.png")
    figures = ""
    for source, name, caption in ((loss_png, "loss.png", "Training loss"),
                                  (eval_png, "probes.png", "Linear probes of the EMA model during training")):
        if source is not None and source.is_file():
            shutil.copyfile(source, model_dir / name)
            figures += f"\n{caption}:\n\n![{caption.lower()}]({name})\n"
    probes = "".join(f"| probe {key.removeprefix('eval_')} | {value:.2%} (test accuracy at the last step) |\n"
                     for key, value in sorted(metrics.items()) if key.startswith("eval_"))
    hours, rest = divmod(int(metrics["train_seconds"]), 3600)
    text = f"""# DDPM on {cfg['data']['name']} ({metrics['parameters'] / 1e6:.2f}M parameters)

A diffusers `UNet2DModel` trained with epsilon prediction by `diffrep dpm fit`; these are the EMA
weights (decay {cfg['optim']['ema_decay']}). Load it with plain diffusers,
`UNet2DModel.from_pretrained(this_folder)`, or as a diffrep teacher, `diffrep.teacher.load_teacher(this_folder)`.

| | |
|---|---|
| data | {cfg['data']['name']} train split, {cfg['data']['channels']} x {cfg['data']['resolution']} x \
{cfg['data']['resolution']}, in [-1, 1] |
| steps | {metrics['steps']} at batch {cfg['optim']['batch_size']} x {metrics['world_size']} device(s) \
({metrics['steps'] * cfg['optim']['batch_size'] * metrics['world_size']:,} images seen) |
| wall time | {hours} h {rest // 60} min of training ({metrics['train_seconds']:.0f} s) |
| final loss | {metrics.get('final_loss', float('nan')):.4f} (mean epsilon MSE over the last 100 steps) |
| schedule | T = {cfg['schedule']['num_train_timesteps']}, {cfg['schedule']['beta_schedule']} betas \
{cfg['schedule']['beta_start']} .. {cfg['schedule']['beta_end']} |
| recipe | {recipe(cfg)} |
{probes}
Samples ({cfg['sample']['sampler'].upper()}, {cfg['sample']['steps']} steps, seed {cfg['seed']}):

![samples](samples.png)
{figures}
## Retrain

```
{command}
```

## Config

```yaml
{config_lib.dump(cfg).strip()}
```
"""
    path = model_dir / "README.md"
    path.write_text(text)
    return path
